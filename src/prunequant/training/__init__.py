"""Training with the Hugging Face Trainer: the fine-tuning and distillation loop (:mod:`.trainer`), resumable
checkpoints (:mod:`.checkpoints`) and more processes through ``accelerate launch`` (:mod:`.launch`). The recipes'
settings are :mod:`prunequant.params.training`."""
