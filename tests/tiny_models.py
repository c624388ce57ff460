"""Randomly initialised, tiny SpeechBrain model folders (ECAPA and x-vector) laid out like the hub's.

They exercise the loading path of both architectures; they say nothing about accuracy.
"""

from __future__ import annotations

from pathlib import Path

COMMON_HEAD = """
pretrained_path: speechbrain/never-fetched  # a hub id on purpose: loading must override it
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: {n_mels}
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
"""

COMMON_TAIL = """
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

ARCHS = {
    "ecapa": (
        20,
        24,
        """
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: 20
    channels: [16, 16, 16, 16, 48]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 8
    lin_neurons: 24
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 24
    out_neurons: 3
""",
    ),
    "xvector": (
        24,
        32,
        """
embedding_model: !new:speechbrain.lobes.models.Xvector.Xvector
    in_channels: 24
    activation: !name:torch.nn.LeakyReLU
    tdnn_blocks: 5
    tdnn_channels: [16, 16, 16, 16, 48]
    tdnn_kernel_sizes: [5, 3, 3, 1, 1]
    tdnn_dilations: [1, 2, 3, 1, 1]
    lin_neurons: 32
classifier: !new:speechbrain.lobes.models.Xvector.Classifier
    input_shape: [null, null, 32]
    activation: !name:torch.nn.LeakyReLU
    lin_blocks: 1
    lin_neurons: 16
    out_neurons: 3
""",
    ),
}


def make_tiny_model(folder: Path, arch: str, seed: int = 0) -> int:
    """Write a random ``arch`` model folder; return its embedding dimension."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    n_mels, dim, body = ARCHS[arch]
    text = COMMON_HEAD.format(n_mels=n_mels) + body + COMMON_TAIL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hyperparams.yaml").write_text(text)
    torch.manual_seed(seed)
    hp = load_hyperpyyaml(text, overrides={"pretrained_path": str(folder)})
    torch.save(hp["embedding_model"].state_dict(), folder / "embedding_model.ckpt")
    torch.save(hp["classifier"].state_dict(), folder / "classifier.ckpt")
    norm = hp["mean_var_norm_emb"]
    norm(torch.randn(4, 1, dim), torch.ones(4))  # give the global norm some statistics to save
    norm._save(folder / "mean_var_norm_emb.ckpt")
    encoder = hp["label_encoder"]
    encoder.update_from_iterable(["spk_a", "spk_b", "spk_c"])
    encoder.save(folder / "label_encoder.txt")
    return dim
