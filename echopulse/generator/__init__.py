"""The ECHOPulse-family generator: ST-MEM ECG encoder, C-ViViT video tokenizer, masked-token transformer."""
