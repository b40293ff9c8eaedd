"""Student architectures timm lacks. Importing this package registers them in timm."""
