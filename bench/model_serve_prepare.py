"""MLflow's side of bench/model_serve.sh, and the requests both servers are sent.

Usage: model_serve_prepare.py DATA.tsv LABEL TEXT SEED HOLDOUT MODEL_DIR REQUESTS N

Reads and splits DATA.tsv exactly as `essaim train naive-bayes` does (the functions of
bench/naive_bayes_sklearn.py), fits scikit-learn's CountVectorizer + MultinomialNB(alpha=1)
pipeline on the training rows and saves it as an MLflow model in MODEL_DIR (the sklearn
flavour, as `mlflow models serve` loads it). Then writes, under REQUESTS:
- `essaim.lua` and `mlflow.lua`: wrk scripts sending the first N held-out messages in
  turn, one message per request, in each server's own request format (Open Inference
  Protocol v2 for essaim, MLflow's `{"inputs": [...]}` for MLflow);
- `essaim/NNN.json` and `mlflow/NNN.json`: the same bodies, one per file, so that the
  benchmark can check that both servers answer every one and agree on the label;
- `expected.txt`: scikit-learn's label of each, in order.
"""
import json
import os
import sys

import mlflow.sklearn
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import make_pipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from naive_bayes_sklearn import read_split  # noqa: E402  (the one split both sides use)


def lua_string(text: str) -> str:
    """Returns a Lua string literal of TEXT's UTF-8 bytes (decimal escapes, no surprises)."""
    out = []
    for byte in text.encode():
        if 32 <= byte < 127 and byte not in (34, 92):
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(path: str, bodies: list[str]) -> None:
    """Writes a wrk script that posts BODIES in turn (each thread from its own start)."""
    with open(path, "w") as script:
        script.write('wrk.method = "POST"\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
        script.write("local bodies = {\n")
        for body in bodies:
            script.write(lua_string(body) + ",\n")
        script.write("}\n")
        script.write("local next_body = 0\n")
        script.write("request = function()\n")
        script.write("  next_body = next_body % #bodies + 1\n")
        script.write("  return wrk.format(nil, nil, nil, bodies[next_body])\n")
        script.write("end\n")


def main() -> None:
    path, label_column, text_column, seed, holdout, model_dir, requests, count = sys.argv[1:9]
    (train_texts, train_labels), (held, _) = read_split(
        path, label_column, text_column, int(seed), float(holdout))
    pipeline = make_pipeline(CountVectorizer(), MultinomialNB(alpha=1.0))
    pipeline.fit(train_texts, train_labels)
    mlflow.sklearn.save_model(pipeline, model_dir)
    sample = held[: int(count)]
    essaim_bodies = [json.dumps({"inputs": [{
        "name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]})
        for text in sample]
    mlflow_bodies = [json.dumps({"inputs": [text]}) for text in sample]
    for system, bodies in (("essaim", essaim_bodies), ("mlflow", mlflow_bodies)):
        os.makedirs(os.path.join(requests, system), exist_ok=True)
        wrk_script(os.path.join(requests, f"{system}.lua"), bodies)
        for index, body in enumerate(bodies):
            with open(os.path.join(requests, system, f"{index:03d}.json"), "w") as out:
                out.write(body)
    with open(os.path.join(requests, "expected.txt"), "w") as out:
        out.writelines(f"{label}\n" for label in pipeline.predict(sample))
    print(json.dumps({"train_rows": len(train_labels), "held_out": len(held),
                      "requests": len(sample)}))


if __name__ == "__main__":
    main()
