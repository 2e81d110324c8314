"""Training: one `Recipe` from data to fitted model (`recipe`); the training loop and schedules behind it
(`phases`) with each phase's optimizer and settings (`phase_settings`); per-epoch checkpoints (`checkpoints`);
fine-tuning rules (`finetune`); number formats (`mixed_precision`: bfloat16 where the CPU computes it); and
data-parallel steps (`distribute`)."""
