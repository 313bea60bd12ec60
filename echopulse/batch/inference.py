"""`EchoModelHandler`: Beam's `RunInference` around `EchoGenerator`, so Beam batches windows across records.

The model is loaded once per worker process (RunInference shares it between the worker's threads), on the
device and at the precision asked for. Each window is drawn with its own seed (`ClipRequest.seed`), and a
clip does not depend on which other windows share its batch, so clips are the same whatever batches a
runner happens to form.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from apache_beam.ml.inference.base import (  # heavy: imported for --generate only
    ModelHandler,
    PredictionResult,
)

from echopulse.batch.elements import ClipRequest, ModelChoice

if TYPE_CHECKING:
    from echopulse.generator.echo_generator import EchoGenerator


class EchoModelHandler(ModelHandler[ClipRequest, PredictionResult, "EchoGenerator"]):
    """Windows in, `PredictionResult(request, EchoClip)` out, `min_batch`..`max_batch` windows per call."""

    def __init__(self, choice: ModelChoice, min_batch: int = 1, max_batch: int = 8) -> None:
        super().__init__(min_batch_size=min_batch, max_batch_size=max_batch)
        self.choice = choice

    def load_model(self) -> EchoGenerator:
        import torch

        from echopulse.generator.model_files import load_generator

        if self.choice.torch_threads:
            torch.set_num_threads(self.choice.torch_threads)
        return load_generator(list(self.choice.paths), self.choice.device, self.choice.precision)

    def run_inference(
        self, batch: Sequence[ClipRequest], model: EchoGenerator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        clips = model.generate(
            [request.window for request in batch], seeds=[request.seed for request in batch],
            steps=self.choice.steps, guidance=self.choice.guidance, batch_size=len(batch),
        )
        return [PredictionResult(request, clip) for request, clip in zip(batch, clips, strict=True)]

    def get_metrics_namespace(self) -> str:
        return "echopulse_inference"

    def share_model_across_processes(self) -> bool:
        return False
