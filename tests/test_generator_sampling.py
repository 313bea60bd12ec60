"""MaskGIT sampling against the official ECHOPulse trace, and classifier-free guidance that really guides.

The official trace (../shared/compat/e2e_tiny_sample.io.safetensors) was made by the official
`Phenaki.sample` with tiny random nets and the Gumbel noise patched to zero.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from echopulse.generator.config import (
    GeneratorConfig,
    SamplingConfig,
    STMEMConfig,
    TokenizerConfig,
    TransformerConfig,
)
from echopulse.generator.official_keys import map_official_keys
from echopulse.generator.sampling import guided_logits, num_masked, sample_ids, temperature_at
from echopulse.generator.transformer import MaskedTokenTransformer

COMPAT = Path(__file__).resolve().parents[2] / "shared" / "compat"
ATOL = RTOL = 1e-5


def _kwargs(name: str) -> dict:
    return json.loads((COMPAT / f"{name}.config.json").read_text())["constructor_kwargs"]


def tiny_config() -> GeneratorConfig:
    """The three tiny nets of the official e2e fixture, as one of our configs."""
    cv = {k: v for k, v in _kwargs("cvivit_tiny").items() if k not in ("use_vgg_and_gan", "wandb_mode")}
    return GeneratorConfig(
        name="compat-tiny",
        stmem=STMEMConfig(**_kwargs("stmem_tiny"), pooling="lead", pooled_lead=1),
        tokenizer=TokenizerConfig(**cv, num_frames=5),
        transformer=TransformerConfig(**_kwargs("maskgit_tiny")),
        sampling=SamplingConfig(steps=18, starting_temperature=0.9, guidance=1.0),
    )


def load_official_part(module: torch.nn.Module, fixture: str, part: str) -> torch.nn.Module:
    mapped, dropped, unknown = map_official_keys(load_file(COMPAT / fixture), part)
    assert not unknown and not dropped
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    # Our only addition to the official nets: the transformer's learned null context.
    assert set(missing) <= {"null_context"} and not unexpected
    return module.eval()


@pytest.fixture(scope="module")
def e2e() -> dict[str, torch.Tensor]:
    return load_file(COMPAT / "e2e_tiny_sample.io.safetensors")


@pytest.fixture(scope="module")
def tiny_transformer() -> MaskedTokenTransformer:
    model = MaskedTokenTransformer(tiny_config().transformer)
    return load_official_part(model, "maskgit_tiny.state_dict.safetensors", "transformer")


def test_schedule_matches_the_official_counts_and_temperatures() -> None:
    schedule = json.loads((COMPAT / "sampling_schedule.json").read_text())
    for n, counts in schedule["sampling_num_masked_per_step"].items():
        assert [num_masked(int(n), s, 18) for s in range(18)] == counts, n
    temps = [temperature_at(s, 18, 0.9) for s in range(18)]
    assert temps == pytest.approx(schedule["temperature_per_step"], abs=1e-12)


@pytest.mark.parametrize("variant", ["greedy", "greedy_primed"])
def test_greedy_sampling_reproduces_the_official_trace(e2e, tiny_transformer, variant: str) -> None:
    """Free-running argmax decoding: the ids fed at every step and the final ids are exactly official;
    the logits at the masked positions match to 1e-5."""
    inputs = e2e[f"{variant}__maskgit_input_ids_per_step"]
    prefix = inputs[0, :, :16] if variant == "greedy_primed" else None
    grid = (2, 4, 4) if prefix is not None else (3, 4, 4)
    steps: list = []
    ids = sample_ids(
        tiny_transformer, e2e["ekg_embeds"], grid, steps=18, noise=False, prefix_ids=prefix,
        trace=steps.append,
    )
    assert torch.equal(ids, e2e[f"{variant}__final_ids"])
    assert len(steps) == 18
    offset = 0 if prefix is None else 16
    metadata = safe_open(COMPAT / "e2e_tiny_sample.io.safetensors", "pt").metadata()
    metadata_counts = json.loads(metadata[f"num_masked_per_step_{variant}"])
    for s in steps:
        assert torch.equal(s.input_ids, inputs[s.step]), f"step {s.step}"
        assert s.masked.sum(dim=1).tolist() == metadata_counts[s.step]
        reference = e2e[f"{variant}__logits_per_step"][s.step][:, offset:]
        expected = reference[s.masked].view(s.logits.shape)
        torch.testing.assert_close(s.logits, expected, atol=ATOL, rtol=RTOL)


def test_teacher_forced_logits_match_every_step(e2e, tiny_transformer) -> None:
    for s in range(18):
        ids = e2e["greedy__maskgit_input_ids_per_step"][s]
        logits = guided_logits(tiny_transformer, ids, e2e["ekg_embeds"], (3, 4, 4), None, guidance=1.0)
        torch.testing.assert_close(logits, e2e["greedy__logits_per_step"][s], atol=ATOL, rtol=RTOL)


def test_guidance_one_is_the_conditional_pass_and_others_mix_in_the_null_pass(tiny_transformer) -> None:
    torch.manual_seed(3)
    ids = torch.randint(0, 65, (2, 48))
    context = torch.randn(2, 1, 64)
    with torch.no_grad():
        cond = tiny_transformer(ids, context, (3, 4, 4))
        uncond = tiny_transformer(ids, tiny_transformer.null_contexts(2), (3, 4, 4))
        one = guided_logits(tiny_transformer, ids, context, (3, 4, 4), None, guidance=1.0)
        three = guided_logits(tiny_transformer, ids, context, (3, 4, 4), None, guidance=3.0)
    torch.testing.assert_close(one, cond, atol=0, rtol=0)
    torch.testing.assert_close(three, uncond + 3.0 * (cond - uncond), atol=ATOL, rtol=RTOL)
    assert (cond - uncond).abs().max() > 1e-3  # the null context is a different context


def test_a_context_batch_must_be_a_whole_multiple_of_the_token_batch(tiny_transformer) -> None:
    """Two contexts per ids row fan the rows out (guidance); three contexts for two rows is an error."""
    ids = torch.randint(0, 65, (2, 48))
    with torch.no_grad():
        fanned = tiny_transformer(ids, torch.randn(4, 1, 64), (3, 4, 4))
        assert fanned.shape == (4, 48, tiny_transformer.config.num_tokens)
        with pytest.raises(ValueError, match="not a multiple"):
            tiny_transformer(ids, torch.randn(3, 1, 64), (3, 4, 4))


def test_guidance_steps_guide_the_first_steps_and_then_stop(tiny_transformer) -> None:
    """Each step's logits are the guided mix on the first `guidance_steps` steps, the plain ones after."""
    torch.manual_seed(4)
    context = torch.randn(2, 1, 64)
    seen: list = []
    with torch.no_grad():
        sample_ids(tiny_transformer, context, (3, 4, 4), steps=6, guidance=3.0, guidance_steps=2,
                   generator=torch.Generator().manual_seed(1), trace=seen.append)  # fmt: skip
        for record in seen:
            positions = record.masked.nonzero()[:, 1].view(2, -1)
            for scale in (3.0, 1.0):
                want = guided_logits(tiny_transformer, record.input_ids, context, (3, 4, 4), positions, scale)
                if torch.allclose(record.logits, want, atol=ATOL, rtol=RTOL):
                    break
            else:
                scale = None
            assert scale == (3.0 if record.step < 2 else 1.0), record.step


def test_a_seed_fixes_each_row_whatever_the_batch(tiny_transformer) -> None:
    torch.manual_seed(0)
    context = torch.randn(3, 1, 64)

    def run(rows: list[int], seeds: list[int]) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sample_ids(tiny_transformer, context[rows], (3, 4, 4), steps=6, generator=generators)

    together = run([0, 1, 2], [10, 11, 12])
    assert torch.equal(together, run([0, 1, 2], [10, 11, 12]))
    assert torch.equal(together[1:2], run([1], [11]))
    assert not torch.equal(together[0], run([0], [99])[0])


def train_context_following_transformer(steps: int = 150) -> tuple[MaskedTokenTransformer, torch.Tensor]:
    """A tiny transformer trained with condition dropout where context A means "all tokens low" and B
    "all tokens high"; unconditionally the two are equally likely."""
    torch.manual_seed(0)
    config = TransformerConfig(
        num_tokens=16, max_seq_len=16, dim=32, dim_context=8, depth=1, heads=2, dim_head=16,
        cond_drop_prob=0.3,
    )
    model = MaskedTokenTransformer(config)
    contexts = torch.randn(2, 1, 8)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        which = torch.randint(0, 2, (16,))
        low, high = torch.randint(0, 8, (16, 16)), torch.randint(8, 16, (16, 16))
        target = torch.where(which[:, None] == 0, low, high)
        masked = torch.rand(16, 16) < torch.rand(16, 1).clamp(min=0.1)
        ids = target.masked_fill(masked, model.mask_id)
        context = model.drop_context(contexts[which])
        logits = model(ids, context, (1, 4, 4))
        loss = torch.nn.functional.cross_entropy(logits[masked], target[masked])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), contexts


def test_guidance_follows_the_context_and_a_null_context_does_not_depend_on_it() -> None:
    model, contexts = train_context_following_transformer()
    generators = [torch.Generator().manual_seed(5) for _ in range(2)]
    low_high = sample_ids(model, contexts, (1, 4, 4), steps=4, guidance=3.0, generator=generators)
    assert (low_high[0] < 8).float().mean() > 0.9
    assert (low_high[1] >= 8).float().mean() > 0.9
    # With the null context in place of the ECG, the same seeds give the same clip for both rows.
    null = model.null_contexts(2)
    generators = [torch.Generator().manual_seed(5) for _ in range(2)]
    same = sample_ids(model, null, (1, 4, 4), steps=4, guidance=3.0, generator=generators)
    assert torch.equal(same[0], same[1])
