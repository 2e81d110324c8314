"""Training: one `Recipe` from data to fitted model (`recipe`), the phases behind it (`phases`: optimizer,
schedules, freezing), per-epoch checkpoints (`checkpoints`), fine-tuning rules (`finetune`), number formats
(`mixed_precision`: bfloat16 where the CPU computes it) and data-parallel steps (`distribute`)."""
