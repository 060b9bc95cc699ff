"""Pretraining of the demonstration encoder (a small MedCLIP-ViT on synthetic drawings)."""
