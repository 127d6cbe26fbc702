"""A byte-level tokenizer: token i < 256 is byte i, then BOS and EOS. Nothing to download."""

from __future__ import annotations

import codecs
from collections.abc import Iterable

BOS = 256
EOS = 257
VOCAB_SIZE = 258


class ByteTokenizer:
    """UTF-8 bytes in, bytes out; the model's vocabulary is the 256 byte values and BOS, EOS."""

    bos = BOS
    eos = EOS
    vocab_size = VOCAB_SIZE

    def encode(self, text: str, *, add_bos: bool = True) -> list[int]:
        ids = list(text.encode("utf-8"))
        return [BOS, *ids] if add_bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of the byte tokens (special tokens dropped, invalid UTF-8 replaced)."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def stream_decoder(self) -> StreamDecoder:
        """A decoder for tokens arriving one at a time (holds back split UTF-8 sequences)."""
        return StreamDecoder()


class StreamDecoder:
    """Turns tokens into text as they come, never emitting half a multi-byte character."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: Iterable[int]) -> str:
        return self._decoder.decode(bytes(i for i in ids if i < 256))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
