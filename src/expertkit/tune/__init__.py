"""Fine-tuning: training data (formats, synth, RAFT), LoRA/QLoRA training, adapters, merge."""
