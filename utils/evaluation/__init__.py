"""Scoring models: accuracy and macro F1 recorded per model (`metrics`), test-time augmentation views (`tta`), and
the corruption suite (`corruptions`: ImageNet-C kinds and microscope faults, five severities)."""
