"""LaraPolicy: the inference side of a LARA checkpoint (implements core.api.Policy).

    policy = LaraPolicy.from_checkpoint("runs/x/final")        # cuda if available, else cpu
    pred = policy.predict_chunk(obs, num_candidates=8, seed=0)  # (H, D) physical actions + check
    s = policy.surprise(pred.info["predicted_latent"], image_t, image_t_plus_C)   # any N, C steps later

The dynamics check (N > 1) picks the candidate whose predicted latent action f_psi(h) agrees
most with the other candidates' (`latent_consensus`): measured offline by `lara probe
--dynamics-check`, this ranks the expert's chunk above reversed / zeroed / shifted /
other-task / noise chunks, where the earlier score (predicted visual change minus code
distance, `check_score="effect"`) was at chance. The step is flagged when every candidate's
predicted effect is below the calibrated null threshold.

Thread safety: predict_chunk/surprise hold a lock; `.meta` is an immutable-by-convention
attribute set once at load time, so other threads may read it at any time.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lara_policy.common.policy_api import ChunkPrediction, DynamicsCheckResult, Observation, PolicyMeta
from lara_policy.core.checkpoint import CheckpointError, load_stats, load_text, load_weights, read_config
from lara_policy.core.configuration import ModelConfig
from lara_policy.core.modeling import LaraModel
from lara_policy.core.processing import NormStats, TextEmbedder


def image_to_tensor(image: np.ndarray, size: int, what: str = "image") -> torch.Tensor:
    """(H, W, 3) uint8 RGB of any size -> (3, size, size) float in [0, 1]; ValueError on bad input."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected a numpy array (H, W, 3) uint8, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"{what}: expected shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8, got {image.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        if x.shape[-1] >= size and x.shape[-2] >= size:
            x = F.interpolate(x, size=(size, size), mode="area")
        else:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0] / 255.0


def latent_consensus(pred_z: torch.Tensor) -> torch.Tensor:
    """(N, M, d) predicted latents -> (N,) mean cosine of each with the OTHER candidates' (whole
    M x d latent): high = the motion most candidates agree on; an outlier scores low."""
    flat = F.normalize(pred_z.flatten(1).float(), dim=-1)
    n = flat.shape[0]
    if n < 2:
        return torch.ones(n, device=pred_z.device)
    sim = flat @ flat.t()
    return (sim.sum(1) - sim.diagonal()) / (n - 1)


CHECK_SCORES = ("consensus", "effect")
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")   # onnxruntime-int8: `lara export --quantize int8`


class LaraPolicy:

    def __init__(self, model: LaraModel, config: ModelConfig, stats: NormStats, instructions: list[str],
                 text: tuple[np.ndarray, np.ndarray], model_id: str, device: torch.device, threads: int = 1,
                 check_score: str = "consensus", onnx=None):
        if not config.has_vla:
            raise CheckpointError(f"checkpoint {model_id} is a LAM-only checkpoint (components={config.components}); "
                                  "LaraPolicy needs a VLA checkpoint")
        if check_score not in CHECK_SCORES:
            raise ValueError(f"check_score must be one of {CHECK_SCORES}, got {check_score!r}")
        self.model = model.eval()
        self.config = config
        self.check_score = check_score      # "effect": the score before issue 9 (for comparisons)
        self.onnx = onnx                    # core.export.OnnxSession: runtime onnxruntime[-int8]; None: torch
        self.runtime = "torch" if onnx is None else "onnxruntime" + ("" if onnx.precision == "fp32" else "-int8")
        self.device = device
        self._lock = threading.Lock()
        self._threads = threads
        s = stats.tensors(device)
        self._action_mean, self._action_std = s["action_mean"], s["action_std"]
        self._state_mean, self._state_std = s["state_mean"], s["state_std"]
        self._text = {ins: (torch.from_numpy(text[0][i]), torch.from_numpy(text[1][i]))
                      for i, ins in enumerate(instructions)}
        v = config.vla
        self.meta = PolicyMeta(action_space=config.action_space, action_dim=v.action_dim, horizon=v.horizon,
                               dt=config.dt, cameras=list(v.cameras), image_size=(v.image_size, v.image_size),
                               state_dim=v.state_dim, state_names=list(config.state_names), model_id=model_id)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None,
                        threads: int = 1, check_score: str = "consensus", runtime: str = "torch",
                        onnx_dir: str | Path | None = None) -> "LaraPolicy":
        """Load a checkpoint directory. On CPU, torch is limited to `threads` threads (1 by
        default: on a small shared CPU, 2 threads contend and give long latency tails).
        runtime "onnxruntime": chunks are sampled by the ONNX graphs in `onnx_dir` (default
        CKPT/onnx, exported on the fly when absent; core/export.py); surprise stays in torch.
        "onnxruntime-int8": the same with the int8 policy graph (`lara export --quantize int8`;
        not PyTorch's function: its error and success are measured, docs/model.md)."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        path = Path(path)
        config, _ = read_config(path)
        if not config.has_vla:
            raise CheckpointError(f"{path} is a LAM-only checkpoint (components={config.components}); "
                                  "LaraPolicy needs a VLA checkpoint from `lara train --paradigm pretrain|posttrain`")
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = LaraModel(config)
        load_weights(path, model)
        stats = load_stats(path)
        for name, values, dim in (("action", stats.action_mean, config.vla.action_dim),
                                  ("state", stats.state_mean, config.vla.state_dim)):
            if len(values) != dim:
                raise CheckpointError(f"{path / 'stats.json'}: {name} statistics have {len(values)} dims, "
                                      f"the model {dim}; the stats belong to another model")
        instructions, emb, mask = load_text(path)
        import json
        meta = json.loads((path / "meta.json").read_text())
        if device.type == "cpu":
            torch.set_num_threads(max(1, min(threads, torch.get_num_threads())))
        onnx = None
        if runtime != "torch":
            from lara_policy.core.export import session_for
            onnx = session_for(path, onnx_dir, threads=threads, device=device.type,
                               precision="int8" if runtime == "onnxruntime-int8" else "fp32")
        return cls(model.to(device), config, stats, instructions, (emb, mask), meta.get("model_id", config.name),
                   device, threads, check_score, onnx)

    # -- Policy protocol --------------------------------------------------------------------
    def reset(self) -> None:
        """LaraPolicy keeps no per-episode state (each chunk is predicted from one observation)."""

    def _instruction(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("observation.instruction is empty: give the task in words")
        if instruction in self._text:           # the checkpoint's own instructions stay
            return self._text[instruction]
        # unknown instruction: MiniLM, loaded lazily once per process; its bounded LRU cache is the
        # only cache of run-time instructions
        emb, mask = TextEmbedder.get().embed([instruction], self.config.vla.text_tokens)
        return torch.from_numpy(emb[0]), torch.from_numpy(mask[0])

    def _observation_tensors(self, obs: Observation):
        if not isinstance(obs, Observation):
            raise ValueError(f"expected an Observation, got {type(obs).__name__}")
        missing = [c for c in self.meta.cameras if c not in obs.images]
        if missing:
            raise ValueError(f"observation lacks camera(s) {missing}; this policy reads {self.meta.cameras}")
        size = self.config.vla.image_size
        images = torch.stack([image_to_tensor(obs.images[c], size, f"camera '{c}'") for c in self.meta.cameras])
        state = np.asarray(obs.state, dtype=np.float32).reshape(-1)
        if state.shape != (self.meta.state_dim,):
            raise ValueError(f"observation.state has shape {np.shape(obs.state)}, expected ({self.meta.state_dim},) "
                             f"{self.meta.state_names}")
        if not np.all(np.isfinite(state)):
            raise ValueError(f"observation.state contains NaN/inf: {state.tolist()}")
        text, text_mask = self._instruction(obs.instruction)
        state_t = (torch.from_numpy(state).to(self.device) - self._state_mean) / self._state_std
        return (images[None].to(self.device), state_t[None], text[None].to(self.device), text_mask[None].to(self.device))

    def predict_chunk(self, obs: Observation, num_candidates: int = 1, seed: int | None = None,
                      guide: np.ndarray | None = None, guide_weights: np.ndarray | None = None) -> ChunkPrediction:
        """guide (G <= H, D) physical actions the new chunk should start with (real-time chunking:
        the part of the executing chunk that runs while this one is computed, then what it
        planned next), guide_weights (G,) in [0, 1] (1 = keep exactly); see LaraModel.sample."""
        if int(num_candidates) < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        n = int(num_candidates)
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            if self.device.type == "cpu" and torch.get_num_threads() > self._threads:
                torch.set_num_threads(self._threads)
            images, state, text, text_mask = self._observation_tensors(obs)
            v = self.config.vla
            g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            noise = torch.randn(n, v.horizon, v.action_dim, generator=g).to(self.device)
            guided = self._guide(guide, guide_weights)
            actions, pred_z = self._sample(images, state, text, text_mask, noise, *guided)
            check, chosen, latent, consensus = None, 0, None, None
            if n > 1 and self.config.has_lam:
                check, consensus = self._dynamics_check(images[:, 0], pred_z)
                chosen = check.chosen_index
                latent = check.predicted_latent
            elif self.config.has_lam:
                latent = pred_z[0].float().cpu().numpy()
            elif n > 1:   # dit_only: no LAM to check with; candidate 0, reported as unchecked
                check = DynamicsCheckResult(num_candidates=n, chosen_index=0, predicted_effect=np.zeros(n, np.float32),
                                            plausibility=np.zeros(n, np.float32), accepted=True,
                                            reason="", predicted_latent=None)
            out = actions[chosen] * self._action_std + self._action_mean
            result = out.float().cpu().numpy().astype(np.float32)
        info = {"latency_ms": (time.perf_counter() - t0) * 1000.0, "num_candidates": n, "model_id": self.meta.model_id}
        if latent is not None:
            info["predicted_latent"] = latent      # (M, d_z) for surprise(), also when N = 1
        if consensus is not None:
            info["check_consensus"] = consensus    # (N,) the check's score per candidate
        if not self.config.has_lam:
            info["dynamics_check"] = "unavailable: this checkpoint has no LAM (variant dit_only)"
        return ChunkPrediction(actions=result, check=check, info=info)

    def _guide(self, guide, weights) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Physical guide actions (G, D) and weights (G,) -> normalised (1, H, D) and (H,) tensors."""
        if guide is None:
            return None, None
        v = self.config.vla
        g = np.asarray(guide, np.float32).reshape(-1, v.action_dim)
        w = np.asarray(weights if weights is not None else np.ones(len(g)), np.float32).reshape(-1)
        if len(g) > v.horizon or len(w) != len(g) or not np.all(np.isfinite(g)) or np.any((w < 0) | (w > 1)):
            raise ValueError(f"guide must be (G <= {v.horizon}, {v.action_dim}) finite actions with G weights in [0, 1]; "
                             f"got {g.shape} and {w.shape}")
        if self.onnx is not None:
            raise ValueError("real-time chunking (guide) runs with runtime torch; the ONNX graph has the Euler "
                             "loop inside (export a guided graph first)")
        full = torch.zeros(1, v.horizon, v.action_dim, device=self.device)
        full[0, :len(g)] = (torch.from_numpy(g).to(self.device) - self._action_mean) / self._action_std
        wt = torch.zeros(v.horizon, device=self.device)
        wt[:len(w)] = torch.from_numpy(w).to(self.device)
        return full, wt

    def _sample(self, images, state, text, text_mask, noise, guide=None, guide_weights=None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """N normalised action chunks and their predicted latents f_psi(h) (None without a LAM)."""
        if guide is not None:
            actions, hidden = self.model.sample(images, state, text, text_mask, noise, self.config.vla.euler_steps,
                                                guide, guide_weights)
            return actions, self.model.project(hidden) if self.config.has_lam else None
        if self.onnx is not None:
            actions, pred_z = self.onnx.sample(images, state, text, text_mask, noise)
            return actions.to(self.device), pred_z.to(self.device) if self.config.has_lam else None
        actions, hidden = self.model.sample(images, state, text, text_mask, noise, self.config.vla.euler_steps)
        return actions, self.model.project(hidden) if self.config.has_lam else None

    def _dynamics_check(self, image_t: torch.Tensor, pred_z: torch.Tensor) -> tuple[DynamicsCheckResult, np.ndarray]:
        if self.onnx is not None:
            effect, plaus = (x.to(self.device) for x in self.onnx.check(image_t, pred_z))
        else:
            effect, plaus = self.model.check_scores(image_t, pred_z)
        threshold = self.config.null_effect_threshold
        consensus = latent_consensus(pred_z)
        if self.check_score == "effect":   # before issue 9: ~argmax of predicted visual change
            scale = threshold if threshold > 0 else float(effect.mean().clamp(min=1e-6))
            score = effect / scale - self.config.plausibility_weight * plaus
        else:
            score = consensus
        chosen = int(torch.argmax(score))
        all_null = threshold > 0 and bool((effect < threshold).all())
        return DynamicsCheckResult(
            num_candidates=int(effect.shape[0]), chosen_index=chosen,
            predicted_effect=effect.float().cpu().numpy(), plausibility=plaus.float().cpu().numpy(),
            accepted=not all_null,
            reason=(f"all {effect.shape[0]} candidates are predicted to do nothing (max effect "
                    f"{float(effect.max()):.4g} < null threshold {threshold:.4g})") if all_null else "",
            predicted_latent=pred_z[chosen].float().cpu().numpy()), consensus.float().cpu().numpy()

    def surprise(self, predicted_latent: np.ndarray, image_t: np.ndarray, image_tC: np.ndarray,
                 score: str = "surprise") -> float:
        """score "surprise": 1 - cos between the LAM latent of the OBSERVED transition (I_t, I_{t+C})
        and the latent predicted for the executed chunk (0 = as predicted, 1 = unrelated, 2 =
        opposite); "stall": motion predicted, none seen (LaraModel.stall)."""
        if score not in ("surprise", "stall"):
            raise ValueError(f"score must be surprise or stall, got {score!r}")
        if not self.config.has_lam:
            raise ValueError("this checkpoint has no LAM (variant dit_only): surprise is unavailable")
        lam = self.config.lam
        z = np.asarray(predicted_latent, dtype=np.float32)
        if z.shape != (lam.num_queries, lam.latent_dim) or not np.all(np.isfinite(z)):
            raise ValueError(f"predicted_latent must be finite with shape ({lam.num_queries}, {lam.latent_dim}), got {z.shape}")
        primary = self.meta.cameras[0]
        size = self.config.vla.image_size
        a = image_to_tensor(image_t, size, f"image_t ('{primary}')")[None].to(self.device)
        b = image_to_tensor(image_tC, size, f"image_tC ('{primary}')")[None].to(self.device)
        with self._lock, torch.inference_mode():
            fn = self.model.surprise if score == "surprise" else self.model.stall
            return fn(torch.from_numpy(z)[None].to(self.device), a, b)
