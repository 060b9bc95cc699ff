"""Shared-work caches: exact invalidation, caches on == caches off, concurrent fills, memmap use.

Everything runs on a small synthetic IDRiD (official test split, so a val boundary can move
without touching test) and the test-size MedCLIP, on CPU, in tmp folders.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medguna.config import DataConfig, MethodConfig, RuntimeConfig, TrialConfig
from medguna.data.synthetic import synthesize
from medguna.trial.cache import cached_tensors, content_key, tensors_checksum
from medguna.trial.loop import run_trial
from medguna.trial.prepare import feature_bank, prepare_shared_work
from medguna.trial.reporting import PrintReporter

SPLIT_NAMES = ("train", "val", "test")


@pytest.fixture(autouse=True)
def single_torch_thread():
    """One intra-op thread: these tensors are tiny and the 2-core machine is shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A fresh synthetic IDRiD per test (tests below modify image files)."""
    return synthesize("idrid", tmp_path / "idrid", seed=3, scale=0.4)


def make_config(cache_dir: Path, root: Path, *, caches: bool = True, val_fraction: float = 0.2,
                **method) -> TrialConfig:
    settings = {"stage1_steps": 20, "stage2_epochs": 2, "batch_size": 8, "prompt_length": 2,
                "description_source": "templates", "preprocessing": "medclip", **method}
    return TrialConfig(
        data=DataConfig(dataset="idrid", root=str(root), cache_dir=str(cache_dir),
                        val_fraction=val_fraction),
        method=MethodConfig(**settings),
        runtime=RuntimeConfig(cpu=True, mixed_precision="no", eval_batch_size=32, caches=caches,
                              feature_bank_views=2),
    ).validate()


def prepare(cfg: TrialConfig, image_dir: Path | None = None):
    image_dir = image_dir or Path(cfg.data.cache_dir) / "images"
    return prepare_shared_work(cfg, device=torch.device("cpu"), autocast=nullcontext, image_dir=image_dir)


def tensor_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def misses(shared) -> set[str]:
    return {name for name, hit in shared.cache_hits.items() if not hit}


ALL_ENTRIES = {"text_embeddings", *(f"{kind}_{s}" for kind in ("images", "features") for s in SPLIT_NAMES)}


def test_each_change_invalidates_exactly_what_depends_on_it(tmp_path: Path, data_root: Path):
    cache = tmp_path / "cache"
    base = prepare(make_config(cache, data_root))
    assert set(base.cache_hits) == ALL_ENTRIES
    assert misses(base) == ALL_ENTRIES  # a cold cache

    again = prepare(make_config(cache, data_root))
    assert misses(again) == set()
    for split in SPLIT_NAMES:  # hits give the very tensors that were computed
        assert torch.equal(again.clean_features[split], base.clean_features[split])
        assert torch.equal(again.images[split], base.images[split])
    assert torch.equal(again.text_embeddings, base.text_embeddings)

    # One changed test image: only the test split's images and features are recomputed.
    test_image = Path(base.manifest.paths("test")[0])
    with Image.open(test_image) as opened:
        flipped = opened.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flipped.load()
    flipped.save(test_image)
    stat = test_image.stat()
    os.utime(test_image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a coarse-mtime filesystem
    changed = prepare(make_config(cache, data_root))
    assert misses(changed) == {"images_test", "features_test"}
    assert not torch.equal(changed.images["test"][0], base.images["test"][0])
    assert torch.equal(changed.images["test"][1:], base.images["test"][1:])

    # A moved val boundary: train and val change, the official test split does not.
    resplit = prepare(make_config(cache, data_root, val_fraction=0.4))
    assert len(resplit.manifest.paths("val")) > len(changed.manifest.paths("val"))
    assert misses(resplit) == {"images_train", "features_train", "images_val", "features_val"}

    # Another preprocessing: every image and feature, never the text embeddings.
    clip = prepare(make_config(cache, data_root, preprocessing="clip"))
    assert misses(clip) == ALL_ENTRIES - {"text_embeddings"}
    assert clip.images["train"].shape[1] == 3 and base.images["train"].shape[1] == 1

    # Other descriptions: only the text embeddings.
    described = prepare(make_config(cache, data_root, description_source="classname"))
    assert misses(described) == {"text_embeddings"}
    assert described.text_embeddings.shape[0] != base.text_embeddings.shape[0]


def test_feature_bank_is_keyed_by_views_seed_and_augmentation(tmp_path: Path, data_root: Path):
    cfg = make_config(tmp_path / "cache", data_root, prompt_length=0)
    shared = prepare(cfg)
    device = torch.device("cpu")
    bank = feature_bank(cfg, shared, device=device, autocast=nullcontext)
    assert shared.cache_hits["feature_bank"] is False
    n_train = len(shared.manifest.paths("train"))
    assert bank.shape == (2, n_train, shared.encoder.embed_dim)
    assert not torch.equal(bank[0], bank[1])  # two different augmented views

    assert torch.equal(feature_bank(cfg, shared, device=device, autocast=nullcontext), bank)
    assert shared.cache_hits["feature_bank"] is True

    cfg.runtime.feature_bank_seed = 1
    other = feature_bank(cfg, shared, device=device, autocast=nullcontext)
    assert shared.cache_hits["feature_bank"] is False and not torch.equal(other, bank)

    # Views of another augmentation are other features: never served from the reference's entry.
    cfg.method.strong_view_augmentation = "crop_flip"
    plain = feature_bank(cfg, shared, device=device, autocast=nullcontext)
    assert shared.cache_hits["feature_bank"] is False and not torch.equal(plain, other)


def test_image_cache_is_a_memory_map_and_a_batch_copies_only_the_batch(tmp_path: Path, data_root: Path):
    shared = prepare(make_config(tmp_path / "cache", data_root))
    train = shared.images["train"]
    cache_files = list((tmp_path / "cache" / "images").glob("images_medclip_224_*.npy"))
    mapped = _file_mappings()
    start = train.data_ptr()
    owners = {path for low, high, path in mapped if low <= start < high}
    assert owners and owners <= {str(p) for p in cache_files}  # the tensor's bytes are the file's pages

    batch = train[torch.tensor([0, 2, 3])]
    assert batch.untyped_storage().nbytes() == 3 * train[0].numel()
    assert not any(low <= batch.data_ptr() < high for low, high, _ in mapped)
    assert torch.equal(batch[1], train[2])


def _file_mappings() -> list[tuple[int, int, str]]:
    rows = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].endswith(".npy"):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            rows.append((low, high, fields[5]))
    return rows


class StateRecorder(PrintReporter):
    """Keeps every state a trial reports (PrintReporter keeps only the last, None at the end)."""

    def __init__(self) -> None:
        super().__init__(verbose=False)
        self.states: list[dict] = []

    def report(self, metrics, state=None) -> None:
        super().report(metrics, state)
        if state is not None:
            self.states.append(state)


def _trial_record(cfg: TrialConfig) -> dict:
    reporter = StateRecorder()
    final = run_trial(cfg, reporter)
    return {
        "losses": [row["loss"] for row in reporter.rows],  # epoch 1, then the final row (epoch 2)
        "final": {k: final[k] for k in ("val_accuracy", "test_accuracy", "test_balanced_accuracy",
                                        "objective_selected", "selected_epoch", "pseudo_label_accuracy")},
        # the student after epoch 1 of 2 (prompts and adapter) and the per-epoch students kept
        "student": {name: tensor_digest(value) for name, value in reporter.states[-1]["student"].items()},
        "epoch_states": [{name: tensor_digest(value) for name, value in state.items()}
                         for state in reporter.states[-1]["epoch_states"]],
    }


@pytest.mark.parametrize("prompt_length", [2, 0], ids=["prompted", "prompt-free"])
def test_caches_on_and_off_give_the_same_trial(tmp_path: Path, data_root: Path, prompt_length: int):
    cached = tmp_path / "cache"
    cold = _trial_record(make_config(cached, data_root, prompt_length=prompt_length))
    warm = _trial_record(make_config(cached, data_root, prompt_length=prompt_length))
    off = _trial_record(make_config(tmp_path / "off", data_root, caches=False,
                                    prompt_length=prompt_length))
    assert len(cold["losses"]) == 2 and all(np.isfinite(cold["losses"]))
    assert warm == cold
    assert off == cold
    assert not (tmp_path / "off" / "tensors").exists()  # caches off persisted nothing
    assert not (tmp_path / "off" / "images").exists()


def _fill_in_child(cache_dir: str, root: str, barrier, results) -> None:
    torch.set_num_threads(1)
    cfg = make_config(Path(cache_dir), Path(root), prompt_length=0)
    barrier.wait(timeout=120)  # both processes start filling the same empty cache together
    shared = prepare(cfg)
    bank = feature_bank(cfg, shared, device=torch.device("cpu"), autocast=nullcontext)
    digests = {f"features_{s}": tensor_digest(shared.clean_features[s]) for s in SPLIT_NAMES}
    digests["text"] = tensor_digest(shared.text_embeddings)
    digests["bank"] = tensor_digest(bank)
    digests["train_images"] = tensor_digest(shared.images["train"])
    results.put(digests)


def test_two_processes_filling_the_same_entries_leave_complete_identical_files(tmp_path: Path,
                                                                               data_root: Path):
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_fill_in_child, args=(str(cache), str(data_root), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    digests = [results.get(timeout=180) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert digests[0] == digests[1]

    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []  # every temporary file was renamed into place or removed
    cfg = make_config(cache, data_root, prompt_length=0)
    shared = prepare(cfg)  # every entry the children wrote loads as a hit with the same bytes
    bank = feature_bank(cfg, shared, device=torch.device("cpu"), autocast=nullcontext)
    assert all(shared.cache_hits.values()) and len(shared.cache_hits) == len(ALL_ENTRIES) + 1
    mine = {f"features_{s}": tensor_digest(shared.clean_features[s]) for s in SPLIT_NAMES}
    mine.update(text=tensor_digest(shared.text_embeddings), bank=tensor_digest(bank),
                train_images=tensor_digest(shared.images["train"]))
    assert mine == digests[0]


def test_cached_tensors_recomputes_a_torn_entry_and_computes_every_time_when_off(tmp_path: Path):
    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}

    key = content_key(b=2, a=1)
    assert key == content_key(a=1, b=2) and key != content_key(a=1, b=3)
    first, hit = cached_tensors(tmp_path, "kind", key, compute)
    assert not hit and torch.equal(first["x"], torch.tensor([[0.0, 1, 2], [3, 4, 5]]))
    entry = tmp_path / "kind" / f"{key}.safetensors"
    entry.write_bytes(entry.read_bytes()[:20])  # torn: a crash mid-copy, a full disk
    second, hit = cached_tensors(tmp_path, "kind", key, compute)
    assert not hit and torch.equal(second["x"], first["x"]) and len(calls) == 2
    third, hit = cached_tensors(tmp_path, "kind", key, compute)
    assert hit and torch.equal(third["x"], first["x"]) and len(calls) == 2

    for _ in range(2):
        cached_tensors(None, "kind", key, compute)
    assert len(calls) == 4


def test_another_tokenizer_vocabulary_recomputes_only_the_text_embeddings(tmp_path: Path, data_root: Path):
    cache = tmp_path / "cache"
    base = prepare(make_config(cache, data_root))
    checkpoint = Path(base.encoder.info["checkpoint_path"]).parent
    tokens = (checkpoint / "vocab.txt").read_text().splitlines()
    same, shuffled = tmp_path / "same", tmp_path / "shuffled"
    same.mkdir()
    shuffled.mkdir()
    (same / "vocab.txt").write_text("\n".join(tokens) + "\n")
    (shuffled / "vocab.txt").write_text("\n".join(tokens[:5] + tokens[5:][::-1]) + "\n")  # specials kept

    def with_tokenizer(folder: Path) -> TrialConfig:
        cfg = make_config(cache, data_root)
        cfg.model.checkpoint, cfg.model.tokenizer = str(checkpoint), str(folder)
        return cfg

    copied = prepare(with_tokenizer(same))  # same weights, same vocabulary content elsewhere: all hits
    assert misses(copied) == set()
    other = prepare(with_tokenizer(shuffled))
    assert misses(other) == {"text_embeddings"}
    assert not torch.allclose(other.text_embeddings, base.text_embeddings)


def _ramp() -> dict[str, torch.Tensor]:
    return {"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


@pytest.mark.parametrize("damage", ["changed_value", "foreign_tensors", "nan", "no_metadata"])
def test_a_cache_entry_that_fails_its_checks_is_rebuilt_and_said_once(tmp_path: Path, damage: str, capsys):
    from safetensors import safe_open
    from safetensors.torch import save_file

    calls = []

    def compute() -> dict[str, torch.Tensor]:
        calls.append(1)
        return _ramp()

    material = {"encoder": "abc:medclip-vit", "texts": "d41d8"}
    key = content_key(**material)
    cached_tensors(tmp_path, "text", key, compute, material=material, names=["x"])
    entry = tmp_path / "text" / f"{key}.safetensors"
    with safe_open(str(entry), framework="pt") as opened:
        stored = opened.metadata()
    assert json.loads(stored["material"]) == material and stored["key"] == key
    if damage == "changed_value":  # the last float's bytes, same file size
        data = bytearray(entry.read_bytes())
        data[-4:] = np.float32(99.0).tobytes()
        entry.write_bytes(bytes(data))
    elif damage == "foreign_tensors":  # another writer's entry, with its own valid checksum
        foreign = {"y": torch.ones(2)}
        save_file(foreign, entry, metadata={"key": key, "checksum": tensors_checksum(foreign)})
    elif damage == "nan":
        bad = {"x": torch.full((2, 3), float("nan"))}
        save_file(bad, entry, metadata={"key": key, "checksum": tensors_checksum(bad)})
    else:  # an entry from before entries carried their key and checksum
        save_file(_ramp(), entry)
    capsys.readouterr()
    again, hit = cached_tensors(tmp_path, "text", key, compute, material=material, names=["x"])
    assert not hit and len(calls) == 2 and torch.equal(again["x"], _ramp()["x"])
    err = capsys.readouterr().err
    assert err.count("rebuilding it") == 1 and entry.name in err
    reread, hit = cached_tensors(tmp_path, "text", key, compute, material=material, names=["x"])
    assert torch.equal(reread["x"], again["x"]) and hit and len(calls) == 2 and capsys.readouterr().err == ""
