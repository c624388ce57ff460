"""Work that takes voices through the decision over time: enrolling a speaker (``enrollment``
with its ``quality`` gates), who spoke when in a recording (``timeline``), and decisions while
audio arrives (``streaming``). Each flow takes the parts it needs (a reader, a decider, the
store's voiceprints), never the :class:`~speakerid.SpeakerID` facade."""
