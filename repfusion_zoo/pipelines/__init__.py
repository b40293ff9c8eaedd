"""The recipe bodies: each ``recipes/<name>.py`` is a short script that calls the `main` of one module
here (and keeps its docstring, which is its ``--help``).

- train_teacher.py: a DDPM teacher (UNet + EMA) on unlabelled images, through the `Trainer`
- distill.py: RepFusion distillation, the backbone folder, the downstream comparison
- finetune.py: any task of `repfusion_zoo.tasks` from a backbone
- cache_features.py: the teacher-feature cache
- push.py: publishing a Hub-ready folder
- shared.py: the recipes' configs folder, the teacher a run names, the backbone's architecture
"""
