"""scikit-learn's MultinomialNB on the split and tokenisation of `essaim train naive-bayes`.

Usage: naive_bayes_sklearn.py DATA.tsv LABEL_COLUMN TEXT_COLUMN SEED HOLDOUT POSITIVE_CLASS

Reads the TSV as essaim's jobs do (header line, tab-separated, no quoting, `\\r` line ends
dropped, rows with too few fields or an empty label skipped), holds out the rows essaim
holds out (FNV-1a of the row's bytes, XOR the seed, then SplitMix64's finaliser: the
top 53 bits as a uniform number below the holdout share), fits CountVectorizer (its
default tokenisation, which essaim copies) and MultinomialNB(alpha=1) on the rest, and
prints one JSON line: the metrics of the positive class, the wall time of the fit and
the process's peak resident set.
"""
import json
import resource
import sys
import time

from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.naive_bayes import MultinomialNB

MASK = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & MASK
    return value


def mix(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & MASK
    return value ^ (value >> 31)


def held_out(line: bytes, seed: int, holdout: float) -> bool:
    return (mix(fnv1a(line) ^ seed) >> 11) / float(1 << 53) < holdout


def read_split(path, label_column, text_column, seed, holdout):
    """Returns ((train texts, train labels), (held-out texts, held-out labels)), read and
    split as essaim's jobs do."""
    train, test = ([], []), ([], [])
    with open(path, "rb") as data:
        header = data.readline().rstrip(b"\n").removesuffix(b"\r").split(b"\t")
        names = [name.decode().strip() for name in header]
        label_index, text_index = names.index(label_column), names.index(text_column)
        for raw in data:
            line = raw.rstrip(b"\n").removesuffix(b"\r")
            fields = line.split(b"\t")
            if len(fields) <= max(label_index, text_index):
                continue
            label = fields[label_index].decode("utf-8", "replace").strip()
            if not label:
                continue
            side = test if held_out(line, seed, holdout) else train
            side[0].append(fields[text_index].decode("utf-8", "replace"))
            side[1].append(label)
    return train, test


def main() -> None:
    path, label_column, text_column, seed, holdout, positive = sys.argv[1:7]
    train, test = read_split(path, label_column, text_column, int(seed), float(holdout))
    started = time.perf_counter()
    vectorizer = CountVectorizer()
    model = MultinomialNB(alpha=1.0).fit(vectorizer.fit_transform(train[0]), train[1])
    predicted = model.predict(vectorizer.transform(test[0]))
    seconds = time.perf_counter() - started
    metric = dict(y_true=test[1], y_pred=predicted, pos_label=positive, zero_division=0)
    print(json.dumps({
        "accuracy": accuracy_score(test[1], predicted),
        "precision": precision_score(**metric),
        "recall": recall_score(**metric),
        "f1": f1_score(**metric),
        "train_rows": len(train[1]),
        "eval_rows": len(test[1]),
        "vocabulary": len(vectorizer.vocabulary_),
        "fit_and_predict_seconds": seconds,
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
