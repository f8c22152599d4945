"""The speech unit tokenizer: audio -> frame features -> k-means units (-> de-duplicated runs).

Reads top to bottom: the feature frontends, the output dataclass, the pre-trained model base,
and `SpeechUnitTokenizer` with `forward` (padded waveforms in), `encode` (any audio in) and `fit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, can_return_tuple

from hf_slm.audio import AudioError, load_audio
from hf_slm.units.configuration_unit_tokenizer import SpeechUnitTokenizerConfig
from hf_slm.units.kmeans import MiniBatchKMeans, nearest_centroid

__all__ = [
    "SpeechUnitTokenizer",
    "SpeechUnitTokenizerOutput",
    "UnitTokenizerPreTrainedModel",
    "init_spectrogram_buffers",
]

UNIT_PAD = -1


# --- frontends -----------------------------------------------------------------------------------
def init_spectrogram_buffers(
    module: torchaudio.transforms.Spectrogram | torchaudio.transforms.MelScale,
) -> None:
    """Recompute the fixed buffers of torchaudio's `Spectrogram` (its window) or `MelScale` (its filterbank)
    from the module's settings, for `_init_weights`: a model built on the meta device, or loaded from a
    checkpoint that lacks them, then gets what building it directly gives."""
    if isinstance(module, torchaudio.transforms.Spectrogram):
        init.copy_(module.window, torch.hann_window(module.win_length))  # torchaudio's default window_fn
    else:
        fb = torchaudio.functional.melscale_fbanks(
            module.n_stft, module.f_min, module.f_max, module.n_mels, module.sample_rate, module.norm,
            module.mel_scale,
        )  # fmt: skip
        init.copy_(module.fb, fb)


class SpectralFrontend(nn.Module):
    """Log-mel or MFCC (+ deltas) frames, ``center=False`` so frame ``t`` covers samples
    ``[t * hop, t * hop + n_fft)`` (the ``win_length`` window sits in the middle of that span)."""

    def __init__(self, config: SpeechUnitTokenizerConfig) -> None:
        super().__init__()
        self.kind = config.frontend
        self.hop = config.hop_length
        self.span = config.n_fft  # samples one STFT frame reads (its window is zero-padded to n_fft)
        mel_kwargs = {"n_fft": config.n_fft, "win_length": config.win_length, "hop_length": self.hop,
                      "n_mels": config.n_mels, "center": False}  # fmt: skip
        # The filterbanks are computed here, so build them on the CPU even when from_pretrained
        # instantiates the model on the meta device (they are saved with the weights, and loaded back).
        with torch.device("cpu"):
            self.mel = torchaudio.transforms.MelSpectrogram(config.sampling_rate, **mel_kwargs)
            if self.kind == "mfcc":
                # torchaudio's MFCC clips at 80 dB under the loudest bin *of the whole batch*, which
                # would make a clip's features depend on its batch-mates; the DCT is applied here instead.
                self.register_buffer("dct", self.dct_matrix(config))

    @staticmethod
    def dct_matrix(config: SpeechUnitTokenizerConfig) -> torch.Tensor:
        """The `(n_mels, n_mfcc)` orthonormal DCT-II that turns log-mel frames into MFCCs."""
        return torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, "ortho")

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths - self.span, self.hop, rounding_mode="floor").clamp_min(-1) + 1

    def forward(self, waves: torch.Tensor, n_frames: torch.Tensor) -> torch.Tensor:
        feats = torch.log(self.mel(waves).clamp_min(1e-5))  # (batch, n_mels, frames)
        if self.kind == "mfcc":
            feats = (feats.transpose(1, 2) @ self.dct).transpose(1, 2)
            # Deltas look two frames each way: hold each row's last valid frame over its padding,
            # as compute_deltas does at the end of an unpadded clip, so that batching changes nothing.
            t = torch.arange(feats.shape[-1], device=feats.device)
            last = torch.minimum(t[None, :], (n_frames - 1).clamp_min(0)[:, None])[:, None, :].expand_as(
                feats
            )
            feats = feats.gather(2, last)
            d1 = torchaudio.functional.compute_deltas(feats).gather(2, last)
            feats = torch.cat([feats, d1, torchaudio.functional.compute_deltas(d1)], dim=1)
        return feats.transpose(1, 2)  # (batch, frames, dim)


class SSLFrontend(nn.Module):
    """Hidden layer ``layer`` of a transformers SSL encoder (HuBERT, WavLM, wav2vec 2.0)."""

    def __init__(self, config: SpeechUnitTokenizerConfig) -> None:
        super().__init__()
        self.encoder = AutoModel.from_config(config.ssl_config)
        self.layer = config.ssl_layer
        n_layers = config.ssl_config.num_hidden_layers
        if not 0 <= self.layer <= n_layers:
            raise ValueError(f"ssl_layer {self.layer} is outside 0..{n_layers} for this encoder")
        # Layers above the one we read are never used: drop them to save time and memory. One more
        # layer than `layer` is kept, so that hidden_states[layer] is exactly what the full encoder
        # gives there (the last hidden state of some encoders goes through a final layer norm).
        self.encoder.encoder.layers = self.encoder.encoder.layers[: min(self.layer + 1, n_layers)]

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder._get_feat_extract_output_lengths(lengths).long()

    def forward(self, waves: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # wav2vec2-style encoders expect zero-mean, unit-variance input per utterance
        mask = attention_mask.to(waves.dtype)
        n = mask.sum(-1, keepdim=True).clamp_min(1)
        mean = (waves * mask).sum(-1, keepdim=True) / n
        var = (((waves - mean) * mask) ** 2).sum(-1, keepdim=True) / n
        waves = (waves - mean) / torch.sqrt(var + 1e-7) * mask
        out = self.encoder(waves, attention_mask=attention_mask.long(), output_hidden_states=True)
        return out.hidden_states[self.layer]


# --- outputs -------------------------------------------------------------------------------------
@dataclass
class SpeechUnitTokenizerOutput(ModelOutput):
    """
    Args:
        units (`torch.LongTensor` of shape `(batch, frames)`):
            Unit ids, padded with -1. De-duplicated (one id per run) when `durations` is set.
        lengths (`torch.LongTensor` of shape `(batch,)`):
            Number of valid entries of each row of `units`.
        durations (`torch.LongTensor` of shape `(batch, frames)`, *optional*):
            Run length of each unit in frames (0 on padding), when de-duplicating.
        features (`torch.FloatTensor` of shape `(batch, frames, feature_dim)`, *optional*):
            The (normalised) frame features that were quantised, before de-duplication.
        feature_lengths (`torch.LongTensor` of shape `(batch,)`, *optional*):
            Valid frames of each row of `features`.
    """

    units: torch.LongTensor | None = None
    lengths: torch.LongTensor | None = None
    durations: torch.LongTensor | None = None
    features: torch.FloatTensor | None = None
    feature_lengths: torch.LongTensor | None = None


# --- model ---------------------------------------------------------------------------------------
class UnitTokenizerPreTrainedModel(PreTrainedModel):
    config_class = SpeechUnitTokenizerConfig
    base_model_prefix = "unit_tokenizer"
    main_input_name = "input_values"
    supports_gradient_checkpointing = False
    _no_split_modules = []
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The SSL encoder is a PreTrainedModel: transformers runs its own `_init_weights` on it. The
        # buffers (window, mel filterbank, DCT) are recomputed from each module's settings.
        if isinstance(module, (torchaudio.transforms.Spectrogram, torchaudio.transforms.MelScale)):
            init_spectrogram_buffers(module)
        elif isinstance(module, SpectralFrontend) and module.kind == "mfcc":
            init.copy_(module.dct, SpectralFrontend.dct_matrix(self.config))
        elif isinstance(module, SpeechUnitTokenizer):
            # no units until `fit` (or a fitted checkpoint) sets the centroids
            init.zeros_(module.centroids)
            init.zeros_(module.is_fitted)
            if module.config.quantizer == "classifier":
                init.zeros_(module.unit_bias)
                init.zeros_(module.blank_weight)
                init.constant_(module.blank_bias, -1e4)


class SpeechUnitTokenizer(UnitTokenizerPreTrainedModel):
    """Discrete speech units: a feature frontend and k-means centroids fitted by :meth:`fit`.

    Example:
        >>> import numpy as np
        >>> from hf_slm.units import SpeechUnitTokenizer, SpeechUnitTokenizerConfig
        >>> tok = SpeechUnitTokenizer(SpeechUnitTokenizerConfig(frontend="mfcc", n_units=8))
        >>> waves = [np.random.default_rng(i).standard_normal(16000).astype("float32") * 0.1 for i in range(4)]
        >>> _ = tok.fit(waves, sampling_rate=16000, progress=False)
        >>> out = tok.encode(waves[0], sampling_rate=16000)
        >>> out.units.shape[0], int(out.durations.sum())
        (1, 49)
    """

    def __init__(self, config: SpeechUnitTokenizerConfig) -> None:
        super().__init__(config)
        self.frontend = SSLFrontend(config) if config.frontend == "ssl" else SpectralFrontend(config)
        self.centroids = nn.Parameter(torch.zeros(config.n_units, config.feature_dim), requires_grad=False)
        if config.quantizer == "classifier":
            # `centroids` holds the phone classes' weights; the CTC head's other classes (blank, word
            # delimiter, unknown) are `blank_weight`: a frame they win continues the phone before it
            self.unit_bias = nn.Parameter(torch.zeros(config.n_units), requires_grad=False)
            self.blank_weight = nn.Parameter(torch.zeros(3, config.feature_dim), requires_grad=False)
            self.blank_bias = nn.Parameter(torch.full((3,), -1e4), requires_grad=False)
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.long))
        self.post_init()
        self.eval()

    def train(self, mode: bool = True) -> SpeechUnitTokenizer:
        # A tokenizer is frozen: its frontend always runs as at inference (no dropout in an SSL
        # encoder), so that the same audio always gives the same units.
        super().train(mode)
        self.frontend.eval()
        return self

    @classmethod
    def from_ssl_encoder(
        cls, encoder: str | Any, layer: int, n_units: int = 256, **config_kwargs: Any
    ) -> SpeechUnitTokenizer:
        """A (not yet fitted) tokenizer over hidden layer ``layer`` of a transformers SSL encoder.

        Args:
            encoder: a `HubertModel` / `WavLMModel` / `Wav2Vec2Model`, or a folder or Hub id of one
                (e.g. ``"facebook/hubert-base-ls960"`` where the Hub is reachable).
        """
        if isinstance(encoder, (str, bytes)) or hasattr(encoder, "__fspath__"):
            encoder = AutoModel.from_pretrained(encoder)
        config = SpeechUnitTokenizerConfig(
            frontend="ssl",
            ssl_config=encoder.config.to_dict(),
            ssl_layer=layer,
            n_units=n_units,
            **config_kwargs,
        )
        tok = cls(config)
        missing, unexpected = tok.frontend.encoder.load_state_dict(encoder.state_dict(), strict=False)
        kept_layers = {f"encoder.layers.{i}." for i in range(len(tok.frontend.encoder.encoder.layers))}
        unexpected = [
            k
            for k in unexpected
            if not (k.startswith("encoder.layers.") and not any(k.startswith(p) for p in kept_layers))
        ]
        if missing or unexpected:
            raise ValueError(
                f"the encoder's weights do not fit its own config: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return tok

    @classmethod
    def from_ctc_model(
        cls, model: str | Any, layer: int | None = None, **config_kwargs: Any
    ) -> SpeechUnitTokenizer:
        """Phone units from a CTC recogniser (e.g. `hf-slm units pretrain-ctc`): each frame's unit is
        the phone its CTC head finds most likely once blank, padding, unknown and the word delimiter
        are left out, so the units are (de-duplicated) phone sequences with durations, and no k-means
        is fitted. ``model`` is a `*ForCTC` model or its folder (with its tokenizer's vocabulary)."""
        from transformers import AutoModelForCTC, AutoTokenizer

        tokenizer = None
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            tokenizer = AutoTokenizer.from_pretrained(model)
            model = AutoModelForCTC.from_pretrained(model)
        if tokenizer is None:
            raise ValueError("pass the CTC model's folder: its tokenizer names the phone classes")
        vocab = tokenizer.get_vocab()
        skip = {tokenizer.pad_token, tokenizer.unk_token, getattr(tokenizer, "word_delimiter_token", None)}
        phones = sorted((i, t) for t, i in vocab.items() if t not in skip and i < model.lm_head.out_features)
        others = sorted(i for t, i in vocab.items() if t in skip and i < model.lm_head.out_features)
        if len(others) > 3:
            raise ValueError(
                f"expected blank, unknown and word delimiter besides the phones, got {len(others)} classes"
            )
        base = model.base_model
        n_layers = base.config.num_hidden_layers
        config = SpeechUnitTokenizerConfig(
            frontend="ssl", ssl_config=base.config.to_dict(), ssl_layer=n_layers if layer is None else layer,
            n_units=len(phones), normalize=False, quantizer="classifier", unit_labels=[t for _, t in phones],
            **config_kwargs,
        )  # fmt: skip
        tok = cls(config)
        tok.frontend.encoder.load_state_dict(base.state_dict(), strict=False)
        ids = torch.tensor([i for i, _ in phones])
        with torch.no_grad():
            tok.centroids.copy_(model.lm_head.weight[ids])
            tok.unit_bias.copy_(model.lm_head.bias[ids])
            other = torch.tensor(others)
            tok.blank_weight[: len(others)].copy_(model.lm_head.weight[other])
            tok.blank_bias[: len(others)].copy_(model.lm_head.bias[other])
        tok.is_fitted.fill_(1)
        return tok

    # -- features ------------------------------------------------------------------------------
    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced for waveforms of ``lengths`` samples."""
        return self.frontend.num_frames(lengths)

    def extract_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame features `(batch, frames, dim)` and the valid frames of each row."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_values, dtype=torch.long)
        lengths = attention_mask.long().sum(-1)
        n_frames = self.num_frames(lengths)
        if int(n_frames.min()) < 1:
            raise AudioError(
                f"audio of {int(lengths.min())} samples is too short for one frame: the tokenizer needs at "
                f"least {self.config.receptive_field} samples ({1000 * self.config.receptive_field / self.config.sampling_rate:.0f} ms "
                f"at {self.config.sampling_rate} Hz). Pad the clip or pass a longer one."
            )
        if isinstance(self.frontend, SSLFrontend):
            feats = self.frontend(input_values, attention_mask)
        else:
            feats = self.frontend(input_values * attention_mask.to(input_values.dtype), n_frames)
        feats = feats[:, : int(n_frames.max())]
        mask = torch.arange(feats.shape[1], device=feats.device)[None, :] < n_frames[:, None]
        if self.config.normalize:
            m = mask[..., None].to(feats.dtype)
            n = m.sum(1, keepdim=True).clamp_min(1)
            mean = (feats * m).sum(1, keepdim=True) / n
            std = torch.sqrt((((feats - mean) * m) ** 2).sum(1, keepdim=True) / n + 1e-5)
            feats = (feats - mean) / std
        return feats * mask[..., None].to(feats.dtype), n_frames

    # -- forward -------------------------------------------------------------------------------
    @can_return_tuple
    def forward(
        self,
        input_values: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        deduplicate: bool | None = None,
        return_features: bool = False,
        **kwargs: Any,
    ) -> SpeechUnitTokenizerOutput:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch, samples)`):
                Mono waveforms at `config.sampling_rate`, right-padded.
            attention_mask (`torch.LongTensor` of shape `(batch, samples)`, *optional*):
                1 for real samples, 0 for padding.
            deduplicate (`bool`, *optional*): overrides `config.deduplicate`.
            return_features (`bool`, defaults to `False`): also return the quantised features.
        """
        if not bool(self.is_fitted):
            raise RuntimeError("this tokenizer has no centroids yet: call fit(dataset) or load a fitted one")
        feats, n_frames = self.extract_features(input_values, attention_mask)
        b, t, d = feats.shape
        if self.config.quantizer == "classifier":
            units = _ctc_segments(feats, self.centroids, self.unit_bias, self.blank_weight, self.blank_bias)
        else:
            units, _ = nearest_centroid(feats.reshape(b * t, d), self.centroids)
        units = units.reshape(b, t)
        valid = torch.arange(t, device=units.device)[None, :] < n_frames[:, None]
        units = units.masked_fill(~valid, UNIT_PAD)
        out = SpeechUnitTokenizerOutput(units=units, lengths=n_frames)
        if deduplicate if deduplicate is not None else self.config.deduplicate:
            out.units, out.durations, out.lengths = deduplicate_units(units, n_frames)
        if return_features:
            out.features, out.feature_lengths = feats, n_frames
        return out

    @torch.inference_mode()
    def encode(
        self,
        audio: Any,
        sampling_rate: int | None = None,
        *,
        deduplicate: bool | None = None,
        return_features: bool = False,
        max_seconds: float | None = None,
        batch_size: int = 8,
    ) -> SpeechUnitTokenizerOutput:
        """Units of one clip or a batch of clips.

        Clips are sorted by length and run ``batch_size`` at a time, so that little compute goes to
        padding; the output keeps the input order.

        Args:
            audio: one clip (path, bytes, array, tensor, datasets Audio value) or a list of them.
                Everything goes through :func:`hf_slm.load_audio`: mixed to mono and resampled.
            sampling_rate: the rate of array inputs.
            deduplicate: overrides ``config.deduplicate``.
            max_seconds: refuse clips longer than this.
            batch_size: clips per forward pass.
        """
        waves = self._load_batch(audio, sampling_rate, max_seconds)
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        rows: list[dict[str, torch.Tensor]] = [{} for _ in waves]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            out = self(
                *pad_waves([waves[i] for i in idx], device=self.device),
                deduplicate=deduplicate,
                return_features=return_features,
            )
            for j, i in enumerate(idx):
                n = int(out.lengths[j])
                rows[i] = {"units": out.units[j, :n], "lengths": out.lengths[j]}
                if out.durations is not None:
                    rows[i]["durations"] = out.durations[j, :n]
                if return_features:
                    rows[i]["features"] = out.features[j, : int(out.feature_lengths[j])]
                    rows[i]["feature_lengths"] = out.feature_lengths[j]
        return _stack_rows(rows)

    def _load_batch(
        self, audio: Any, sampling_rate: int | None, max_seconds: float | None = None
    ) -> list[np.ndarray]:
        items = list(audio) if _is_batch(audio) else [audio]
        if len(items) == 0:
            raise AudioError("got an empty batch: pass at least one clip")
        return [
            load_audio(
                a, sampling_rate, target_sampling_rate=self.config.sampling_rate, max_seconds=max_seconds
            )
            for a in items
        ]

    # -- fitting -------------------------------------------------------------------------------
    @torch.inference_mode()
    def fit(
        self,
        dataset: Any,
        n_units: int | None = None,
        *,
        batch_size: int = 16,
        epochs: int = 2,
        init_frames: int = 50_000,
        audio_column: str = "audio",
        sampling_rate: int | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> dict[str, float]:
        """Fit the k-means centroids on a dataset, streaming it in batches.

        k-means++ seeds the centres on the first ``init_frames`` frames; then ``epochs`` passes of
        mini-batch k-means run over the whole dataset (each batch of clips is one mini-batch).

        Args:
            dataset: a `datasets.Dataset` with an audio column, or a list of clips.
            n_units: number of units (default: ``config.n_units``; the centroids are resized).
            batch_size: clips per mini-batch.
            sampling_rate: the rate of the clips when they are arrays.

        Returns:
            ``{"inertia": mean squared distance to the nearest centre on the last pass, "frames": ...}``
        """
        from tqdm.auto import tqdm

        if n_units is not None and n_units != self.config.n_units:
            self.config.n_units = n_units
            self.centroids = nn.Parameter(torch.zeros(n_units, self.config.feature_dim), requires_grad=False)
        km = MiniBatchKMeans(self.config.n_units, seed=seed)

        n_batches = -(-len(dataset) // batch_size)

        def batches(desc: str) -> Iterable[torch.Tensor]:
            chunks = _chunks(dataset, batch_size, audio_column)
            for clips in tqdm(chunks, total=n_batches, desc=desc, disable=not progress):
                feats, n_frames = self.extract_features(
                    *pad_waves(self._load_batch(clips, sampling_rate), device=self.device)
                )
                valid = torch.arange(feats.shape[1])[None, :] < n_frames[:, None]
                yield feats[valid].float().cpu()

        sample, n = [], 0
        for frames in batches("k-means++ sample"):
            sample.append(frames)
            n += len(frames)
            if n >= init_frames:
                break
        km.init(torch.cat(sample)[:init_frames])
        inertia, total = 0.0, 0
        for epoch in range(epochs):
            inertia, total = 0.0, 0
            for frames in batches(f"k-means epoch {epoch + 1}/{epochs}"):
                inertia += km.partial_fit(frames) * len(frames)
                total += len(frames)
            if epoch < epochs - 1:
                km.reseed_dead(frames)  # centres no frame chose get a second chance
        self.centroids.data.copy_(km.centroids.to(self.centroids.dtype))
        self.is_fitted.fill_(1)
        return {"inertia": inertia / max(total, 1), "frames": float(total)}


# --- helpers -------------------------------------------------------------------------------------
def _ctc_segments(
    feats: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    blank_weight: torch.Tensor,
    blank_bias: torch.Tensor,
) -> torch.Tensor:
    """Frame units from a CTC head: the best phone where a phone wins; where blank (or the word
    delimiter) wins, the phone before it continues (the first phone, before the first spike). So each
    phone owns the frames from its CTC spike to the next one, as greedy CTC decoding reads them."""
    phone_logits = feats @ weight.T + bias
    best, phone = phone_logits.max(-1)
    is_blank = (feats @ blank_weight.T + blank_bias).max(-1).values > best
    t = torch.arange(feats.shape[1], device=feats.device).expand_as(phone)
    last = torch.where(is_blank, torch.full_like(t, -1), t).cummax(1).values  # last spike at or before t
    first = torch.where(is_blank, torch.full_like(t, feats.shape[1]), t).min(1, keepdim=True).values
    source = torch.where(last < 0, first.clamp_max(feats.shape[1] - 1).expand_as(t), last)
    return phone.gather(1, source)


def pad_waves(
    waves: Sequence[np.ndarray], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad mono waveforms into `(batch, samples)` with an attention mask."""
    n = max(len(w) for w in waves)
    out = torch.zeros(len(waves), n)
    mask = torch.zeros(len(waves), n, dtype=torch.long)
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        mask[i, : len(w)] = 1
    return out.to(device), mask.to(device)


def deduplicate_units(
    units: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collapse runs of equal units in each row: ``(units, durations, lengths)``, padded with -1 / 0.

    Vectorised over the batch: runs are found on the flattened valid frames, with each row's
    first frame forced to start a run.
    """
    b, t = units.shape
    valid = torch.arange(t, device=units.device)[None, :] < lengths[:, None]
    starts = torch.ones_like(units, dtype=torch.bool)
    starts[:, 1:] = units[:, 1:] != units[:, :-1]
    starts &= valid
    run_id = torch.cumsum(starts.long(), dim=1) - 1  # index of the run each frame belongs to
    n_runs = starts.sum(1)
    width = int(n_runs.max()) if b else 0
    out_units = torch.full((b, width), UNIT_PAD, dtype=torch.long, device=units.device)
    durations = torch.zeros((b, width), dtype=torch.long, device=units.device)
    rows = torch.arange(b, device=units.device)[:, None].expand(b, t)
    out_units[rows[starts], run_id[starts]] = units[starts]
    durations.index_put_((rows[valid], run_id[valid]), torch.ones_like(units[valid]), accumulate=True)
    return out_units, durations, n_runs


def _stack_rows(rows: list[dict[str, torch.Tensor]]) -> SpeechUnitTokenizerOutput:
    """Re-pad per-clip results into one output (units with -1, durations and features with 0)."""
    from torch.nn.utils.rnn import pad_sequence

    out = SpeechUnitTokenizerOutput(
        units=pad_sequence([r["units"] for r in rows], batch_first=True, padding_value=UNIT_PAD),
        lengths=torch.stack([r["lengths"] for r in rows]),
    )
    if "durations" in rows[0]:
        out.durations = pad_sequence([r["durations"] for r in rows], batch_first=True, padding_value=0)
    if "features" in rows[0]:
        out.features = pad_sequence([r["features"] for r in rows], batch_first=True)
        out.feature_lengths = torch.stack([r["feature_lengths"] for r in rows])
    return out


def _is_batch(audio: Any) -> bool:
    """A list, tuple or `datasets` column of clips is a batch; a list of numbers is one clip,
    and so is any array, tensor, path, bytes or dict."""
    if isinstance(audio, (str, bytes, bytearray, dict, np.ndarray, torch.Tensor)) or not hasattr(
        audio, "__len__"
    ):
        return False
    if isinstance(audio, (list, tuple)):
        return len(audio) == 0 or not isinstance(audio[0], (int, float, np.floating, np.integer))
    return hasattr(audio, "__iter__")  # e.g. datasets' lazy Column


def _chunks(dataset: Any, batch_size: int, audio_column: str) -> Iterable[list]:
    if hasattr(dataset, "column_names"):  # a datasets.Dataset: read only the audio column
        column = dataset.select_columns([audio_column])
        for start in range(0, len(column), batch_size):
            yield [
                row[audio_column] for row in column.select(range(start, min(start + batch_size, len(column))))
            ]
    else:
        for start in range(0, len(dataset), batch_size):
            yield list(dataset[start : start + batch_size])
