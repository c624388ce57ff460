"""From a clip to a voiceprint: decoding and resampling (``audio``), where the speech is
(``vad``), the model's files and identity (``models``), and the embedding engine behind one small
protocol (``embedder``: sample rate, dimension, ``embed(clips)``), run by ONNX Runtime in fp32 or
int8 (``onnx_model``, built once per model from SpeechBrain's checkpoint by ``ecapa_graph``,
``ecapa_int8``, ``onnx_ops``, ``onnx_convolutions``) or by SpeechBrain itself. ``reader`` is the
one path every caller takes: decode, find the speech, embed. Knows no store and no decision."""
