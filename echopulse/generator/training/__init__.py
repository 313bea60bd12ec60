"""Training the generator family: the video tokenizer first, then the masked-token transformer with its
ST-MEM ECG encoder (`echopulse train tokenizer|generator`).

Both trainers follow the official ECHOPulse recipe where it is known (Adam, gradient clipping at 0.5,
linear warm-up then cosine decay, EMA weights, the MaskGIT masking objective) and differ where the
official code cannot be followed (no LPIPS/I3D perceptual nets: MSE + L1 + SSIM instead; condition
dropout so classifier-free guidance works; ST-MEM trained jointly, since its released weights are
CC BY-NC). Every step draws its randomness from (seed, step) alone, so a run is reproducible on CPU and a
resumed run continues exactly where the interrupted one stopped.
"""

from echopulse.generator.training.errors import TrainingError

__all__ = ["TrainingError"]
