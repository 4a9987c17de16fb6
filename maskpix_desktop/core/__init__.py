"""Qt-free engine: images, masks, blending, metrics, SAM and IP2P engines, model registry."""
