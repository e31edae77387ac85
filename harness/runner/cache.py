"""Loading models and tokenizers once per process, and handing each cell its model as loaded.

A (model, head) is read from disk once: later cells get the same weights back from an in-memory
copy, a classification model is given another label layer instead of being loaded again, and the
parameters a checkpoint does not hold (a fresh head) are initialised per seed exactly as
``from_pretrained`` initialises them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from harness.errors import UserError
from harness.models import ModelSpec, hub_error_message, load_with_aliases
from harness.runner.device import Hardware

log = logging.getLogger(__name__)

HEADS = ("sequence-classification", "masked-lm", "causal-lm")
# A decoder's pretrained prediction head (dense + norm before the vocabulary projection) carried
# into its classification head, as an encoder's MLM head is: checkpoint key -> model key.
PRETRAINED_HEAD_KEYS = {"modernbert-decoder": {r"^lm_head\.(dense|norm)\.": r"head.\1."}}


@dataclass
class LoadedModel:
    spec: ModelSpec
    head: str
    model: torch.nn.Module
    tokenizer: object
    new_keys: tuple[str, ...]  # parameters not in the checkpoint (a fresh head), re-initialised per seed
    pristine: dict | None = None  # CPU copy of the weights as loaded, to reset between cells
    parameters: int = 0
    loaded_id: str = ""  # the hub id or path that loaded (a registry alias, if the primary id was not found)
    head_from: tuple[str, ...] = ()  # model keys taken from the checkpoint's LM head
    extra: dict = field(default_factory=dict)


def choose_pad(tok) -> None:
    """A pad token distinct from the end token: a decoder's classification head pools at the
    rightmost token that is not padding, which must be the end token appended to every input."""
    if tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id:
        return
    for name in ("pad_token", "unk_token", "bos_token", "cls_token", "sep_token"):
        token = getattr(tok, name, None)
        if token is not None and tok.convert_tokens_to_ids(token) != tok.eos_token_id:
            tok.pad_token = token
            return
    # no other special token: any id but the end token's pads right-padded rows correctly
    tok.pad_token = tok.convert_ids_to_tokens(1 if tok.eos_token_id == 0 else 0)


class ModelCache:
    def __init__(self, hardware: Hardware, max_models: int = 2):
        self.hardware = hardware
        self.max_models = max_models
        self._models: dict[tuple, LoadedModel] = {}
        self._tokenizers: dict[tuple, object] = {}
        self._ids: dict[tuple, str] = {}  # (model id, revision) -> the hub id or path its tokenizer loaded from
        self.loads = 0  # from_pretrained calls, for tests and logs

    def tokenizer(self, spec: ModelSpec):
        key = (spec.model_id, spec.revision)
        if key not in self._tokenizers:
            from transformers import AutoTokenizer

            try:
                tok, self._ids[key] = load_with_aliases(
                    spec, lambda name: AutoTokenizer.from_pretrained(name, revision=spec.revision))
            except UserError:
                raise
            except Exception as exc:
                raise UserError(hub_error_message(f"tokenizer of '{spec.model_id}'", exc)) from None
            choose_pad(tok)
            self._tokenizers[key] = tok
        return self._tokenizers[key]

    def resolved(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` as the hub id (or path) its tokenizer loaded from, with no alias left to try: a
        model's id is resolved once, and its tokenizer, config and weights come from one repository."""
        self.tokenizer(spec)
        return replace(spec, model_id=self._ids[(spec.model_id, spec.revision)], aliases=())

    def model_type(self, spec: ModelSpec) -> str:
        """The config's ``model_type`` (``modernbert``, ``modernbert-decoder``, ``bert``, ...)."""
        from transformers import AutoConfig

        config, _ = load_with_aliases(self.resolved(spec),
                                      lambda name: AutoConfig.from_pretrained(name, revision=spec.revision))
        return getattr(config, "model_type", "")

    def load(self, spec: ModelSpec, head: str, num_labels: int | None = None, problem_type: str | None = None,
             training: bool = False, pretrained_head: bool = True, config: dict | None = None) -> LoadedModel:
        """The model with ``head``, loaded on first use and kept for the process. ``config``
        overrides config values (e.g. the encoder's pooling) and is part of the cache key."""
        if head not in HEADS:
            raise ValueError(f"unknown head {head}")
        key = (spec.model_id, spec.revision, head, training, pretrained_head, tuple(sorted((config or {}).items())))
        loaded = self._models.pop(key, None)
        if loaded is not None and not swap_label_layer(loaded, num_labels, problem_type):
            loaded = None
        if loaded is None:
            loaded = self._from_pretrained(spec, head, self.tokenizer(spec), num_labels, problem_type, training,
                                           pretrained_head, config or {})
        self._models[key] = loaded  # most recently used last
        while len(self._models) > self.max_models:
            del self._models[next(iter(self._models))]
        self._activate(loaded)
        return loaded

    def _from_pretrained(self, spec, head, tok, num_labels, problem_type, training, pretrained_head,
                         config) -> LoadedModel:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

        auto = {"sequence-classification": AutoModelForSequenceClassification,
                "masked-lm": AutoModelForMaskedLM, "causal-lm": AutoModelForCausalLM}[head]
        kwargs = {"revision": spec.revision, "output_loading_info": True, **config,
                  # training keeps fp32 master weights and autocasts; inference runs in the compute dtype
                  "dtype": torch.float32 if training else self.hardware.dtype}
        if head == "sequence-classification":
            kwargs["num_labels"] = num_labels
            if problem_type:
                kwargs["problem_type"] = problem_type

        def read(name):
            model_type = getattr(AutoConfig.from_pretrained(name, revision=spec.revision), "model_type", "")
            mapping = PRETRAINED_HEAD_KEYS.get(model_type) if head == "sequence-classification" else None
            extra = {"key_mapping": mapping} if mapping and pretrained_head else {}
            try:
                return auto.from_pretrained(name, attn_implementation=self.hardware.attention, **kwargs, **extra)
            except ValueError as exc:
                if "attn" not in str(exc).lower() and "attention" not in str(exc).lower():
                    raise
                log.warning("%s does not support %s attention; using eager", name, self.hardware.attention)
                return auto.from_pretrained(name, attn_implementation="eager", **kwargs, **extra)

        try:
            (model, info), loaded_id = load_with_aliases(self.resolved(spec), read)
        except UserError:
            raise
        except OSError as exc:
            raise UserError(hub_error_message(f"model '{spec.model_id}'", exc)) from None
        self.loads += 1
        # a decoder's classification head pools at the rightmost token that is not pad_token_id,
        # so the config must agree with the tokenizer that pads the batch
        model.config.pad_token_id = tok.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tok.pad_token_id
        new_keys = tuple(sorted(set(info.get("missing_keys", ())) | {k[0] if isinstance(k, tuple) else k
                                                                     for k in info.get("mismatched_keys", ())}))
        check_backbone_loaded(model, new_keys, loaded_id)
        head_from = tuple(sorted(k for k in model.state_dict() if k.startswith("head.") and k not in new_keys)) \
            if head == "sequence-classification" else ()
        pristine = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()} if training else None
        if not training:
            model.eval()
        return LoadedModel(spec=spec, head=head, model=model, tokenizer=tok, new_keys=new_keys, pristine=pristine,
                           parameters=backbone_parameters(model), loaded_id=loaded_id, head_from=head_from)

    def loaded_of(self, spec: ModelSpec) -> LoadedModel | None:
        for (model_id, revision, *_), loaded in self._models.items():
            if (model_id, revision) == (spec.model_id, spec.revision):
                return loaded
        return None

    def _activate(self, loaded: LoadedModel) -> None:
        for other in self._models.values():
            if other is not loaded and next(other.model.parameters()).device != torch.device("cpu"):
                other.model.to("cpu")
        loaded.model.to(self.hardware.device)
        self.hardware.empty_cache()

    @staticmethod
    def fresh(loaded: LoadedModel, seed: int, init_state: dict | None = None) -> torch.nn.Module:
        """The loaded model reset to its pretrained weights (``init_state`` over them, but for the
        label layer, when warm-starting), with its new parameters initialised from ``seed`` exactly
        as ``from_pretrained`` initialises them: every cell starts from the same place."""
        model = loaded.model
        if loaded.pristine is None:
            raise ValueError("fresh() needs a model loaded with training=True")
        reinit_new_parameters(model, loaded.new_keys, seed)
        with torch.no_grad():
            # restoring the checkpoint's weights after the initialiser keeps them exact even for a
            # model whose initialiser does not skip initialised weights
            model.load_state_dict({k: v for k, v in loaded.pristine.items() if k not in loaded.new_keys}, strict=False)
            if init_state:
                labels = set(label_keys(loaded))
                model.load_state_dict({k: v for k, v in init_state.items() if k not in labels}, strict=False)
        model.train()
        return model


def swap_label_layer(loaded: LoadedModel, num_labels: int | None, problem_type: str | None) -> bool:
    """Give a cached classification model a label layer with ``num_labels`` outputs instead of
    loading it again (the label layer is new per cell anyway). False when it cannot be found."""
    model = loaded.model
    if loaded.head != "sequence-classification" or num_labels is None or (
            model.config.num_labels == num_labels and model.config.problem_type == problem_type):
        return True
    names = label_layers(loaded)
    if len(names) != 1:
        return False
    layer = model.get_submodule(names[0])
    new = torch.nn.Linear(layer.in_features, num_labels, bias=layer.bias is not None,
                          device=layer.weight.device, dtype=layer.weight.dtype)
    parent, _, attr = names[0].rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, new)
    for pname, param in new.named_parameters():
        if loaded.pristine is not None:
            loaded.pristine[f"{names[0]}.{pname}"] = param.detach().to("cpu", copy=True)
    model.config.num_labels = num_labels
    model.config.problem_type = problem_type
    if hasattr(model, "num_labels"):
        model.num_labels = num_labels
    return True


def backbone_parameters(model) -> int:
    """Parameters of the model without its task head: the same count for every head of a model."""
    base = getattr(model, "base_model", model)
    return sum(p.numel() for p in base.parameters())


def label_layers(loaded: LoadedModel) -> list[str]:
    """Names of the new linear layers whose outputs are the labels (the only part of a fine-tuned
    classifier that cannot carry over to a task with other labels)."""
    model = loaded.model
    n = model.config.num_labels
    return [owner for owner in sorted({k.rsplit(".", 1)[0] for k in loaded.new_keys})
            if isinstance(model.get_submodule(owner), torch.nn.Linear) and model.get_submodule(owner).out_features == n]


def check_backbone_loaded(model: torch.nn.Module, new_keys: Sequence[str], name: str) -> None:
    """Only a head may be new: backbone weights the checkpoint lacks would be random numbers
    (transformers initialises them with a warning the harness mutes), so they stop the run."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    backbone = [k for k in new_keys if prefix and k.startswith(prefix + ".")]
    if backbone:
        shown = ", ".join(backbone[:5]) + (f" and {len(backbone) - 5} more" if len(backbone) > 5 else "")
        raise UserError(f"the checkpoint '{name}' lacks {len(backbone)} weight(s) of the model ({shown}); they "
                        "would be random: pass a complete checkpoint")


def label_keys(loaded: LoadedModel) -> list[str]:
    return [f"{owner}.{name}" for owner in label_layers(loaded)
            for name, _ in loaded.model.get_submodule(owner).named_parameters()]


def reinit_new_parameters(model: torch.nn.Module, new_keys: Sequence[str], seed: int) -> None:
    """Initialise the parameters a checkpoint did not provide (a fresh head) from ``seed`` with
    the model's own initialiser, as ``from_pretrained`` does: transformers initialises every
    module whose weights are not flagged as loaded, children before parents."""
    torch.manual_seed(seed)
    if not new_keys:
        return
    new = set(new_keys)
    for name, param in model.named_parameters():
        param._is_hf_initialized = name not in new
    for buf in model.buffers():
        buf._is_hf_initialized = True
    for module in model.modules():
        module._is_hf_initialized = False
    model.initialize_weights()
    for param in model.parameters():
        param._is_hf_initialized = True
