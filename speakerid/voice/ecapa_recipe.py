"""Whether a SpeechBrain speaker model is the recipe :mod:`speakerid.voice.ecapa_graph` restates: an
ECAPA-TDNN on plain Fbank features with sentence mean normalisation, as SpeechBrain's published
speaker models are. Anything else runs through SpeechBrain itself."""

from __future__ import annotations

MAX_ATTENTION_BOUND = 40.0  # exp(+-40), and its products with squared deviations, are normal fp32 numbers


def _attention_bound(model) -> float:
    """Largest |attention logit| before its bias: the sum of |weights| per channel (inputs are tanh)."""
    return float(model.asp.conv.conv.weight.detach()[:, :, 0].abs().sum(1).max())


def unsupported(classifier) -> list[str]:
    """Why ``classifier`` is not the recipe this graph restates (an ECAPA-TDNN on Fbank features with
    sentence mean normalisation, as SpeechBrain's published speaker models are); empty if it is."""
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    from speechbrain.processing.features import InputNormalization

    mods = classifier.mods
    features, norm, model = (getattr(mods, n, None) for n in ("compute_features", "mean_var_norm", "embedding_model"))
    reasons = []
    if not isinstance(model, ECAPA_TDNN):
        reasons.append("not ECAPA-TDNN")
    if not isinstance(features, Fbank) or features.deltas or features.context or not features.compute_STFT.center:
        reasons.append("features are not plain Fbank")
    elif (
        features.compute_STFT.pad_mode != "constant" or features.compute_STFT.win_length != features.compute_STFT.n_fft
    ):
        reasons.append("unsupported STFT padding or window")
    if not isinstance(norm, InputNormalization) or norm.norm_type != "sentence" or norm.std_norm:
        reasons.append("normalisation is not sentence mean")
    if isinstance(model, ECAPA_TDNN) and not model.asp.global_context:
        reasons.append("pooling without global context")
    if isinstance(model, ECAPA_TDNN) and _attention_bound(model) > MAX_ATTENTION_BOUND:
        reasons.append("attention logits too large for an exp without its max")
    return reasons
