"""LoRA self-training of a local model: the real loop on a tiny GPT-2, resume, and the vLLM client.

The tiny model and its tokenizer are built inside these tests from a config (nothing is
downloaded) and pre-trained on the estimators seed corpus. Skipped when the ``train``
extra (torch, transformers, peft) is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from typer.testing import CliRunner  # noqa: E402

from ouro.agents.lora import LocalLMResearcher, LoraTrainConfig, TinySpec, VLLMAdapterClient, VLLMServerConfig  # noqa: E402
from ouro.agents.lora.text import parse_completion, render_method  # noqa: E402
from ouro.cli import app  # noqa: E402
from ouro.config import validate  # noqa: E402
from ouro.store import ArmStore  # noqa: E402
from ouro.environments.estimators.methods import FAMILY_NAMES, parse_method  # noqa: E402

PROMPT = "Method: "
GENERATIONS = 3
SEEDS = 2
ARM = "none"
ADAPTER_TAGS = ["initial", *[f"gen-{g:03d}" for g in range(GENERATIONS)]]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model runs fastest on one CPU thread (and a loaded machine punishes more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 and a character tokenizer, built here and pre-trained on real methods."""
    from ouro.agents.lora.tiny import build_tiny, save_tiny

    model, tokenizer, log = build_tiny(PROMPT, TinySpec())
    assert log["loss_last"] < 0.5 * log["loss_first"]
    return save_tiny(model, tokenizer, tmp_path_factory.mktemp("tiny") / "base")


def experiment(base: Path, name: str = "lora-tiny") -> dict:
    return {
        "name": name,
        "seeds": SEEDS,
        "environment": {"kind": "estimators"},
        "researcher": {
            "kind": "local-lm",
            "model": str(base),
            "prompt": PROMPT,
            "cpu_threads": 1,
            "max_new_tokens": 48,
            # fits each pool closely (KL from the pool's family mix about 0.015 nats), as MLE would
            "lora": {"rank": 8, "alpha": 16, "learning_rate": 5e-3, "epochs": 10, "batch_size": 16, "device": "cpu"},
        },
        "loop": {"generations": GENERATIONS, "proposals": 32},
        "arms": [{"name": ARM, "verifier": {"kind": "none"}}],
    }


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference_run(tiny_base, tmp_path_factory) -> Path:
    """`ouro run` of 3 generations, verifier none: propose -> verify -> LoRA-train, twice over (2 seeds)."""
    work = tmp_path_factory.mktemp("ref")
    cfg = write_config(work / "lora.yaml", experiment(tiny_base))
    result = CliRunner().invoke(app, ["run", str(cfg), "--out", str(work / "run"), "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return work / "run"


def record(run: Path, generation: int) -> dict:
    return ArmStore(run, ARM).read_record(generation)


# ---------------------------------------------------------------- the loop


@pytest.mark.slow
def test_three_generations_train_adapters_that_change_the_model_and_lose_entropy(tiny_base, reference_run):
    from ouro.agents.lora.probe import adapter_trajectory

    probes = [PROMPT, PROMPT + '{"family":"', PROMPT + '{"family":"huber","c":']
    report = {}
    for seed in range(SEEDS):
        folder = reference_run / "adapters" / ARM / f"seed-{seed}"
        adapters = [folder / tag for tag in ADAPTER_TAGS]
        for a in adapters:  # a PEFT folder vLLM can load
            assert (a / "adapter_config.json").is_file() and (a / "adapter_model.safetensors").is_file(), a
        # each generation's state names its own adapter, relative to the run directory
        for g in range(GENERATIONS):
            state = record(reference_run, g)["researchers"][str(seed)]
            assert state["adapter"] == f"adapters/{ARM}/seed-{seed}/gen-{g:03d}"
            assert state["learns"] == g + 2  # the real-data learn before generation 0, then one per generation
            assert 0 <= state["invalid"] <= state["proposed"]
        dists, logits = adapter_trajectory(tiny_base, adapters, PROMPT, FAMILY_NAMES, probes)
        # every generation's adapter changes the model's outputs
        for j in range(1, len(adapters)):
            assert (logits[j] - logits[j - 1]).abs().max().item() > 1e-3, f"seed {seed}: {ADAPTER_TAGS[j]} changed nothing"
        entropy = [d["entropy"] for d in dists]
        sampled = [
            next(v for s, k, v in record(reference_run, g)["metrics"] if s == seed and k == "entropy")
            for g in range(GENERATIONS)
        ]
        report[seed] = {"model": [round(e, 3) for e in entropy], "sampled": [round(e, 3) for e in sampled]}
        # nobody verifies: the model's exact family entropy is lower after 3 generations than before
        assert entropy[-1] < entropy[0], f"seed {seed}: family entropy did not fall: {entropy}"
    print("family entropy by adapter", ADAPTER_TAGS, report)


# ---------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_reloads_the_adapter_of_the_last_finished_generation(tiny_base, reference_run, tmp_path, monkeypatch):
    """Ctrl-C during generation 2; `ouro resume` puts both seeds back on gen-001 and ends as if never stopped."""
    calls = {"propose": 0}
    loaded: list[str | None] = []
    original_propose, original_load = LocalLMResearcher.propose, LocalLMResearcher.load_state

    def propose(self, n, rng, feedback=None):
        calls["propose"] += 1
        if calls["propose"] == 2 * SEEDS + 1:  # the first proposal batch of generation 2
            raise KeyboardInterrupt
        return original_propose(self, n, rng, feedback)

    def load_state(self, state):
        loaded.append(state["adapter"])
        return original_load(self, state)

    monkeypatch.setattr(LocalLMResearcher, "propose", propose)
    monkeypatch.setattr(LocalLMResearcher, "load_state", load_state)
    cfg = write_config(tmp_path / "lora.yaml", experiment(tiny_base))
    run = tmp_path / "run"
    first = CliRunner().invoke(app, ["run", str(cfg), "--out", str(run), "--quiet"])
    assert first.exit_code == 130, first.output
    assert not (run / "arms" / ARM / "gen-000002.jsonl").exists()
    loaded.clear()

    second = CliRunner().invoke(app, ["resume", str(run), "--quiet"])
    assert second.exit_code == 0, second.output + repr(second.exception)
    assert loaded == [f"adapters/{ARM}/seed-{s}/gen-001" for s in range(SEEDS)]
    # the resumed generation drew and learned exactly what the uninterrupted run did
    from safetensors.torch import load_file

    for s in range(SEEDS):
        ours = load_file(str(run / "adapters" / ARM / f"seed-{s}" / "gen-002" / "adapter_model.safetensors"))
        ref = load_file(str(reference_run / "adapters" / ARM / f"seed-{s}" / "gen-002" / "adapter_model.safetensors"))
        assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ours)
    def drawn(path: Path) -> list:  # what was proposed and decided (wall-clock costs differ by nature)
        return [{k: v for k, v in json.loads(line).items() if k != "cost"} for line in path.read_text().splitlines()]

    assert drawn(run / "verdicts.jsonl") == drawn(reference_run / "verdicts.jsonl")


def test_model_tiny_is_built_in_the_run_directory_and_garbage_never_crashes(tmp_path):
    """`model: tiny` barely pre-trained: most outputs are invalid; they are counted, the run finishes."""
    from ouro.runner import execute, prepare_run_dir

    data = experiment(Path("unused"), name="tiny-garbage")
    data["seeds"] = 1
    data["loop"] = {"generations": 2, "proposals": 8}
    data["researcher"].update(model="tiny", tiny={"pretrain_steps": 10}, max_new_tokens=24)
    run = tmp_path / "run"
    prepare_run_dir(validate(data), run)
    execute(run, 1)
    assert (run / "models" / "tiny" / "config.json").is_file()
    states = [record(run, g)["researchers"]["0"] for g in range(2)]
    assert all(s["proposed"] >= 8 and s["invalid"] > 0 for s in states)
    assert sum(s["invalid"] for s in states) == states[-1]["invalid_total"]
    assert (run / "summary.json").is_file() or (run / "metrics.csv").is_file()


# ---------------------------------------------------------------- pieces


def test_train_adapter_is_deterministic_and_learns_only_the_completion(tiny_base, tmp_path):
    from ouro.agents.lora.runtime import load_base
    from ouro.agents.lora.train import encode_examples, train_adapter
    from safetensors.torch import load_file

    _, tokenizer = load_base(tiny_base, torch.device("cpu"), torch.float32)
    (ids, start), = encode_examples(tokenizer, [(PROMPT, '{"family":"mean"}')], max_length=64)
    assert tokenizer.decode(ids[:start]) == PROMPT and ids[-1] == tokenizer.eos_token_id
    examples = [(PROMPT, '{"family":"median"}')] * 8
    config = LoraTrainConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=2, batch_size=4, device="cpu", seed=7)
    a = train_adapter(tiny_base, None, examples, tmp_path / "a", config)
    b = train_adapter(tiny_base, None, examples, tmp_path / "b", config)
    wa, wb = (load_file(str(p / "adapter_model.safetensors")) for p in (a, b))
    assert wa and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((a / "adapter_config.json").read_text())["fan_in_fan_out"] is True  # GPT-2's Conv1D


def test_log_likelihood_lets_a_self_judge_rank_proposals(tiny_base):
    from ouro.agents.lora.researcher import LocalLMResearcherConfig
    from ouro.environments.estimators import EstimatorsConfig

    researcher = LocalLMResearcherConfig(model=str(tiny_base), prompt=PROMPT, lora={"device": "cpu"}).build(
        EstimatorsConfig().build()
    )
    common, rare = parse_method({"family": "mean"}), parse_method({"family": "huber", "c": 4.9})
    ll = researcher.log_likelihood([common, rare])
    assert np.all(np.isfinite(ll)) and ll[0] > ll[1] + 5  # the corpus's favourite against a value it never saw


def test_parse_completion_counts_what_is_not_a_method():
    assert parse_completion('{"family":"trimmed_mean","alpha":0.2}\ntrailing', parse_method).alpha == 0.2
    for bad in ("", "not json", "[1, 2]", '{"family":"mode"}', '{"family":"huber","c":99}', '{"family":"mean"'):
        assert parse_completion(bad, parse_method) is None
    assert render_method(parse_method({"family": "huber", "c": 1.345})) == '{"family":"huber","c":1.345}'


def test_configs_and_registration_need_no_torch():
    """`make run` must never need torch: importing the registries and validating configs imports none."""
    code = (
        "import sys, ouro.config as c; c.experiment_model(); import ouro.cohort, ouro.runner; "
        "c.load_config('configs/lora-local.yaml'); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ---------------------------------------------------------------- vLLM


def test_vllm_client_loads_unloads_and_retries(tmp_path):
    from .fake_vllm import FakeVLLM

    from ouro.agents.lora.vllm_adapters import VLLMError

    adapter = tmp_path / "gen-000"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    with FakeVLLM() as server, VLLMAdapterClient(
        VLLMServerConfig(base_url=server.url + "/v1", retries=3, backoff=0.01)
    ) as client:
        client.load("ouro-run-gen-000", client.server_path(adapter, tmp_path))
        client.load("ouro-run-gen-000", str(adapter))  # listed already (a resumed run): not loaded twice
        assert server.requests("/v1/load_lora_adapter") == [{"lora_name": "ouro-run-gen-000", "lora_path": str(adapter)}]
        server.fail_next = 2
        out = client.complete("ouro-run-gen-000", PROMPT, 3, max_tokens=16, temperature=1.0, seed=5)
        assert out.texts[0] == '{"family":"median"}' and len(out.texts) == 3 and client.retries_used == 2
        assert server.requests("/v1/completions")[-1]["model"] == "ouro-run-gen-000"
        with pytest.raises(VLLMError):  # a 4xx is not retried
            client.complete("no-such-adapter", PROMPT, 1, max_tokens=4, temperature=1.0)
        assert client.unload("ouro-run-gen-000") and not client.unload("ouro-run-gen-000")
        with pytest.raises(VLLMError):
            client.load("broken", str(tmp_path / "missing"))


def test_researcher_generates_through_vllm_with_a_new_adapter_name_each_generation(tiny_base, tmp_path):
    from .fake_vllm import FakeVLLM

    from ouro.agents.lora.researcher import LocalLMResearcherConfig
    from ouro.environments.estimators import EstimatorsConfig

    env = EstimatorsConfig().build()
    with FakeVLLM() as server:
        config = LocalLMResearcherConfig(
            model=str(tiny_base),
            prompt=PROMPT,
            cpu_threads=1,
            lora=LoraTrainConfig(rank=4, alpha=8, learning_rate=5e-3, epochs=1, device="cpu"),
            server=VLLMServerConfig(base_url=server.url, model="base"),
        )
        researcher = config.build(env)
        researcher.bind(tmp_path / "run-x", "arm", 3)
        rng = np.random.default_rng(0)
        researcher.learn(env.real_data(rng))  # -> adapters/arm/seed-3/initial
        first = researcher.propose(6, rng)
        researcher.learn(first)  # -> gen-000
        second = researcher.propose(6, rng)
        state = researcher.state()
    loads = [b["lora_name"] for b in server.requests("/v1/load_lora_adapter")]
    assert loads == ["ouro-run-x-arm-s3-initial", "ouro-run-x-arm-s3-gen-000"]
    assert [b["lora_name"] for b in server.requests("/v1/unload_lora_adapter")] == ["ouro-run-x-arm-s3-initial"]
    models = [b["model"] for b in server.requests("/v1/completions")]
    assert set(models[: models.index("ouro-run-x-arm-s3-gen-000")]) == {"ouro-run-x-arm-s3-initial"}
    assert server.requests("/v1/load_lora_adapter")[1]["lora_path"] == str(
        (tmp_path / "run-x" / "adapters" / "arm" / "seed-3" / "gen-000").resolve()
    )
    # one text in three is not JSON: dropped, counted, and replaced by a second round (6 + 2 drawn)
    assert len(first) == len(second) == 6
    assert state["invalid"] == 2 and state["proposed"] == 8 and state["invalid_total"] == 4
    assert state["adapter"] == "adapters/arm/seed-3/gen-000"
