"""Local Hugging Face causal LM back-end: a model directory loaded offline with transformers."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medguna.errors import CheckpointError
from medguna.text.describe.backends import Completion, SamplingSettings


class HuggingFaceBackend:
    """Samples with `model.generate` on CPU (or `device`), seeded per sample index."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise CheckpointError(
                f"{self.model_dir} is not a Hugging Face model directory (no config.json); "
                "give --model the folder written by save_pretrained (weights, config, tokenizer)"
            )
        try:
            # local_files_only: never reach the Hub, even if the name looks like a repo id.
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModelForCausalLM.from_pretrained(
                self.model_dir, local_files_only=True
            )
        except (OSError, ValueError) as error:
            raise CheckpointError(
                f"cannot load a causal LM and tokenizer from {self.model_dir}: {error}"
            ) from None
        self.model.to(device).eval()
        self.device = device

    @property
    def identity(self) -> dict[str, str]:
        return {"backend": "hf", "model": str(self.model_dir.resolve()), "base_url": ""}

    def close(self) -> None:
        del self.model

    def _input_text(self, prompt: str) -> str:
        # Instruction-tuned models expect their chat template; base models get the bare prompt.
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        return prompt + "\n"

    def complete(
        self, prompt: str, sampling: SamplingSettings, count: int, first_index: int
    ) -> list[Completion]:
        inputs = self.tokenizer(self._input_text(prompt), return_tensors="pt").to(self.device)
        prompt_length = inputs["input_ids"].shape[1]
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        seed = (sampling.seed or 0) + first_index
        # fork_rng: seeding must not disturb the caller's global random state.
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs,
                do_sample=True,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                max_new_tokens=sampling.max_tokens,
                num_return_sequences=count,
                pad_token_id=pad_id,
            )
        completions = []
        eos_id = self.tokenizer.eos_token_id
        for row in output:
            new_tokens = row[prompt_length:]
            ended = eos_id is not None and bool((new_tokens == eos_id).any())
            text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
            completions.append(Completion(text, "stop" if ended else "length"))
        return completions
