"""Our tests of `generate` on our models, run by every tester that can generate.

transformers' common test file asks a model that can generate for its `GenerationTesterMixin`, which
lives in transformers' repository (not in its source distribution). This class stands in for it with
our own tests of what that mixin covers: greedy decoding against the model's own forward, sampling,
beam search, assisted and prompt-lookup decoding, continuing from a returned cache, `inputs_embeds`
prompts, dict outputs, left padding, and (ours) a clear error for a prompt past the model's context.

A tester provides `prepare_config_and_inputs_for_generate()`: a config and left-padded prompts (with
their clips, for the models that take audio).
"""

from __future__ import annotations

import copy

import torch

from hf_slm.models.checks import ContextLengthError

NEW = 4  # new tokens per test
TIE = 1e-4  # logits closer than this are a tie: batched, cached or chunked sums may break it either way


class GenerationTesterMixin:
    def _generate_setup(self, model_class):
        config, inputs = self.model_tester.prepare_config_and_inputs_for_generate()
        torch.manual_seed(0)
        model = model_class(config).eval()
        return model, inputs

    def _greedy(self, model, inputs, **kwargs):
        settings = {"do_sample": False, "max_new_tokens": NEW, "min_new_tokens": NEW, "num_beams": 1}
        return model.generate(**inputs, **{**settings, **kwargs})

    @staticmethod
    def _sequences(out):
        return out if isinstance(out, torch.Tensor) else out.sequences

    def _reference(self, model, inputs):
        """Greedy decoding with the processed scores of every step (what the other decodings must match)."""
        out = self._greedy(model, inputs, return_dict_in_generate=True, output_scores=True)
        return out.sequences, torch.stack(out.scores, 1).float()  # (rows, NEW, vocab)

    def assertSameGreedy(self, got: list[int], want: list[int], scores: torch.Tensor) -> None:
        """`got` is `want` (new tokens at the end, `scores` the reference's per step), or parts from it only
        where the reference had a tie: a tiny random model has near-equal logits, and computing the same
        numbers in another order (batched, cached, several tokens at once) may break a tie the other way."""
        self.assertEqual(len(got), len(want))
        start = len(want) - scores.shape[0]
        self.assertEqual(got[:start], want[:start])
        for step in range(scores.shape[0]):
            if got[start + step] != want[start + step]:
                a, b = scores[step, want[start + step]], scores[step, got[start + step]]
                self.assertLess(float((a - b).abs()), TIE, f"step {step}: {got} != {want}, not a tie")
                return  # after a tie the two continue from different prefixes

    def _allowed(self, model, vocab: int) -> torch.Tensor:
        """The additive mask of the tokens `generate` may produce (speech+text LMs mask the other modality)."""
        bias = torch.zeros(vocab)
        if hasattr(model, "allowed_token_ids"):
            bias.fill_(float("-inf"))
            bias[model.allowed_token_ids("any")] = 0.0
        eos = model.generation_config.eos_token_id
        bias[torch.as_tensor(eos if eos is not None else model.config.eos_token_id)] = float(
            "-inf"
        )  # min_new_tokens
        audio = getattr(model.config, "audio_token_id", None)
        if audio is not None:  # a clip's placeholder is never an answer
            bias[audio] = float("-inf")
        return bias

    def test_greedy_generate_matches_forward(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            out = self._sequences(self._greedy(model, inputs))
            prompt = inputs["input_ids"].shape[1]
            self.assertEqual(out.shape, (inputs["input_ids"].shape[0], prompt + NEW))
            # the same tokens from the model's forward alone, recomputed from scratch at every step (no cache)
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
            with torch.no_grad():
                for _ in range(NEW):
                    logits = model(input_ids=ids, attention_mask=mask, **extra).logits[:, -1].float()
                    nxt = (logits + self._allowed(model, logits.shape[-1])).argmax(-1, keepdim=True)
                    ids = torch.cat([ids, nxt], 1)
                    mask = torch.cat([mask, torch.ones_like(nxt)], 1)
            _, scores = self._reference(model, inputs)
            for row in range(ids.shape[0]):
                self.assertSameGreedy(ids[row].tolist(), out[row].tolist(), scores[row])

    def test_generate_continues_from_returned_cache(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            whole = self._greedy(model, inputs, max_new_tokens=2 * NEW, min_new_tokens=2 * NEW,
                                 return_dict_in_generate=True, output_scores=True)  # fmt: skip
            scores = torch.stack(whole.scores, 1).float()
            first = self._greedy(model, inputs, return_dict_in_generate=True)
            self.assertIsNotNone(first.cache)
            mask = torch.cat([inputs["attention_mask"], torch.ones_like(first.sequences[:, -NEW:])], 1)
            again = {**inputs, "input_ids": first.sequences, "attention_mask": mask}
            second = self._sequences(self._greedy(model, again, cache=first.cache))
            for row in range(second.shape[0]):
                self.assertSameGreedy(second[row].tolist(), whole.sequences[row].tolist(), scores[row])

    def _prompt_embeds(self, model, inputs) -> torch.Tensor:
        if hasattr(model, "_merge_audio"):  # the speech-aware LM: its own merge of the clips into the prompt
            return model._merge_audio(inputs["input_ids"], inputs.get("input_features"), inputs.get("feature_attention_mask"))[0]  # fmt: skip
        return model.get_input_embeddings()(inputs["input_ids"])

    def test_generate_from_inputs_embeds(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            ids, mask = inputs["input_ids"], inputs["attention_mask"]
            want = self._sequences(self._greedy(model, inputs))
            with torch.no_grad():
                embeds = self._prompt_embeds(model, inputs)
            # ids and embeddings together: the ids come back with the new tokens
            both = self._sequences(
                self._greedy(model, {"input_ids": ids, "attention_mask": mask}, inputs_embeds=embeds)
            )
            self.assertEqual(both.tolist(), want.tolist())
            # embeddings alone: only the new tokens come back (as from any causal LM)
            if getattr(model.config, "text_lora", None) and getattr(
                model.config, "text_lora_audio_only", False
            ):
                continue  # without ids the model cannot tell that the prompt held audio (its LoRA stays off)
            alone = self._sequences(self._greedy(model, {"attention_mask": mask}, inputs_embeds=embeds))
            self.assertEqual(alone.tolist(), want[:, ids.shape[1] :].tolist())

    def test_sample_generate_is_seeded(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            runs = []
            for _ in range(2):
                torch.manual_seed(3)
                runs.append(
                    self._sequences(model.generate(**inputs, do_sample=True, top_k=5, max_new_tokens=NEW))
                )
            self.assertEqual(runs[0].tolist(), runs[1].tolist())
            self.assertLessEqual(runs[0].shape[1], inputs["input_ids"].shape[1] + NEW)

    def test_beam_search_generate(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            out = self._greedy(model, inputs, num_beams=2, num_return_sequences=2, return_dict_in_generate=True,
                               output_scores=True)  # fmt: skip
            batch = inputs["input_ids"].shape[0]
            self.assertEqual(out.sequences.shape, (2 * batch, inputs["input_ids"].shape[1] + NEW))
            self.assertEqual(out.sequences_scores.shape, (2 * batch,))
            # beam 1 of 1 is greedy search
            one = self._sequences(self._greedy(model, inputs, num_beams=1))
            self.assertEqual(out.sequences.shape[1], one.shape[1])

    def test_assisted_decoding_matches_greedy(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            assistant = copy.deepcopy(model)
            for row in range(inputs["input_ids"].shape[0]):  # assisted decoding takes one row at a time
                one = self._select_row(inputs, row)
                want, scores = self._reference(model, one)
                got = self._sequences(self._greedy(model, one, assistant_model=assistant))
                self.assertSameGreedy(got[0].tolist(), want[0].tolist(), scores[0])

    def test_prompt_lookup_decoding_matches_greedy(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            for row in range(inputs["input_ids"].shape[0]):
                one = self._select_row(inputs, row)
                want, scores = self._reference(model, one)
                got = self._sequences(self._greedy(model, one, prompt_lookup_num_tokens=2))
                self.assertSameGreedy(got[0].tolist(), want[0].tolist(), scores[0])

    @staticmethod
    def _select_row(inputs, row) -> dict:
        """Row `row` of a left-padded batch alone, its padding dropped (with its clip, where there is one)."""
        batch = inputs["input_ids"].shape[0]
        one = {
            k: v[row : row + 1] if torch.is_tensor(v) and v.shape[0] == batch else v
            for k, v in inputs.items()
        }
        keep = one["attention_mask"][0].bool()
        one["input_ids"], one["attention_mask"] = one["input_ids"][:, keep], one["attention_mask"][:, keep]
        return one

    @staticmethod
    def _strip_left_padding(sequence, inputs, row) -> list[int]:
        pad = int((inputs["attention_mask"][row] == 0).sum())
        return sequence[pad:].tolist()

    def test_left_padded_batch_matches_rows_alone(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            batch, scores = self._reference(model, inputs)
            for row in range(inputs["input_ids"].shape[0]):
                alone = self._sequences(self._greedy(model, self._select_row(inputs, row)))
                want = self._strip_left_padding(batch[row], inputs, row)
                self.assertSameGreedy(alone[0].tolist(), want, scores[row])

    def test_generate_dict_outputs(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            out = self._greedy(
                model, inputs, return_dict_in_generate=True, output_scores=True, output_logits=True
            )
            self.assertEqual(len(out.scores), NEW)
            self.assertEqual(len(out.logits), NEW)
            batch = inputs["input_ids"].shape[0]
            self.assertEqual(out.logits[0].shape[0], batch)
            # the chosen tokens are the best of the processed scores
            new = out.sequences[:, -NEW:]
            best = torch.stack([s.argmax(-1) for s in out.scores], 1)
            self.assertEqual(new.tolist(), best.tolist())

    def test_prompt_past_the_context_is_refused(self):
        for model_class in self.all_generative_model_classes:
            model, inputs = self._generate_setup(model_class)
            limit = model.config.get_text_config(decoder=True).max_position_embeddings
            ids = inputs["input_ids"]
            long_ids = torch.cat(
                [ids[:, :1].repeat(1, limit + 8), ids], 1
            )  # its first token, many times over
            long = {**inputs, "input_ids": long_ids, "attention_mask": torch.ones_like(long_ids)}
            with self.assertRaisesRegex(
                ContextLengthError, rf"longer than the model's context of {limit}.*shorten"
            ):
                model.generate(**long, max_new_tokens=2)
            # a prompt that fits, asking for too many new tokens: the most it may ask for is named
            with self.assertRaisesRegex(ContextLengthError, r"ask for at most max_new_tokens=\d+"):
                model.generate(**inputs, max_new_tokens=limit)
