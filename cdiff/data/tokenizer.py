"""Caption tokenizers: BERT's (offline, from a local copy) or a WordPiece trained on the captions.

Both are saved with the dataset as a ``transformers`` fast tokenizer folder, so later stages
load either with :func:`load_tokenizer` and get ids padded/truncated to ``max_length``
(77 as in the release) with ``[CLS] ... [SEP]`` around them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from cdiff.errors import InputError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT = "bert-base-uncased"
BASE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()"  # so new words never become [UNK]


def train_wordpiece(captions: Iterable[str], vocab_size: int, max_length: int):
    """A lower-casing WordPiece tokenizer whose vocabulary is learned from ``captions``.

    The vocabulary is: the special tokens, every character seen plus a base alphabet (plain and as a ``##``
    continuation, so nothing is ever unknown), then whole words by descending frequency
    (ties alphabetical) up to ``vocab_size``. It is built here rather than by ``tokenizers``'
    WordPieceTrainer because that trainer breaks frequency ties in hash order, so two runs on
    the same captions give different vocabularies; this one is byte-identical every time.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(caption)))
    chars = sorted({c for w in counts for c in w} | set(BASE_ALPHABET))
    vocab = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    words = sorted((w for w in counts if len(w) > 1), key=lambda w: (-counts[w], w))
    vocab += words[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(
        models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def load_bert(path: str | None, max_length: int):
    """``bert-base-uncased``'s tokenizer from a local folder or the Hugging Face cache, never the network."""
    from transformers import BertTokenizerFast

    folder = Path(path).expanduser() if path else _bert_in_cache()
    if folder is None or not ((folder / "vocab.txt").is_file() or (folder / "tokenizer.json").is_file()):
        where = f"{path} has no vocab.txt" if path else "it is not in the Hugging Face cache"
        raise InputError(
            f"the {BERT} tokenizer is not available offline ({where}): pass --set data.tokenizer_path=DIR "
            f"(a folder with its vocab.txt), or fill the Hugging Face cache (HF_HOME) on a machine with "
            f"internet via `hf download {BERT}`, or use --set data.tokenizer=wordpiece"
        )
    tok = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True, do_lower_case=True)
    missing = [t for t in SPECIAL_TOKENS[:4] if t not in tok.get_vocab()]
    if missing:
        raise InputError(f"tokenizer in {folder} lacks {', '.join(missing)}; is it a BERT vocabulary?")
    tok.model_max_length = max_length
    return tok


def _bert_in_cache() -> Path | None:
    """The cached snapshot folder of bert-base-uncased, if any (no network access)."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("tokenizer.json", "vocab.txt"):
        hit = try_to_load_from_cache(BERT, name)
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def load_tokenizer(folder: str | Path):
    """The tokenizer saved with a prepared dataset."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file() and not (folder / "vocab.txt").is_file():
        raise InputError(
            f"no tokenizer in {folder}; run `cdiff prepare` to make the dataset and its tokenizer"
        )
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def encode(tokenizer, captions: list[str], max_length: int):
    """Token ids ``(B, max_length)`` as a torch LongTensor, padded and truncated like the release."""
    out = tokenizer(
        captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    return out["input_ids"]


def caption_notes(tokenizer, captions: list[str], max_length: int) -> list[str]:
    """One-line warnings about captions the text model will not read as written.

    A caption word (after the tokenizer's own normalisation and pre-tokenisation) is known when
    it is a single vocabulary token; punctuation always is. Unknown words are split into pieces
    the model never saw together, so each such caption gets one note naming them with up to
    eight known words closest in spelling. A caption longer than ``max_length`` tokens
    (``[CLS]``/``[SEP]`` included) gets a note that it was truncated. Duplicates are dropped;
    the order follows ``captions``. Works for the caption WordPiece and BERT fast tokenizers.
    """
    import difflib

    backend = tokenizer.backend_tokenizer
    vocab = tokenizer.get_vocab()
    words = sorted(w for w in vocab if len(w) > 1 and w.isalpha() and w.isascii())
    notes: list[str] = []
    for caption in captions:
        text = backend.normalizer.normalize_str(caption) if backend.normalizer else caption
        pre = backend.pre_tokenizer
        pieces = [w for w, _ in pre.pre_tokenize_str(text)] if pre else text.split()
        unknown = [w for w in pieces if w not in vocab and any(c.isalnum() for c in w)]
        if unknown:
            hints = [
                f"{w} (it knows e.g. {', '.join(close)})" if close else f"{w} (no known word is close)"
                for w in dict.fromkeys(unknown)
                for close in [difflib.get_close_matches(w, words, n=8, cutoff=0.6)]
            ]
            notes.append(
                f'caption "{caption}" has words the text model never saw as whole words: {"; ".join(hints)}'
            )
        n = len(tokenizer(caption, truncation=False, verbose=False)["input_ids"])
        if n > max_length:
            short = caption if len(caption) <= 60 else caption[:57] + "..."
            notes.append(
                f'caption "{short}" is {n} tokens long with [CLS]/[SEP]; it was truncated to '
                f"{max_length} tokens, so the last {n - max_length} were dropped"
            )
    return list(dict.fromkeys(notes))
