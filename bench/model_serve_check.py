"""Sends each request of bench/model_serve.sh once to both servers before they are timed.

Usage: model_serve_check.py REQUESTS ESSAIM_URL MLFLOW_URL

Every answer must be 200; the labels of the two servers must agree on at least 99 % of
the messages (the same model up to floating point; scikit-learn's own labels, in
`expected.txt`, are the third opinion). Exits 1 otherwise, naming the first mismatch.
"""
import json
import os
import sys
import urllib.request


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status != 200:
            raise SystemExit(f"{url} answered {answer.status}")
        return json.load(answer)


def essaim_label(answer: dict) -> str:
    outputs = {output["name"]: output for output in answer["outputs"]}
    return outputs["label"]["data"][0]


def main() -> None:
    requests, essaim_url, mlflow_url = sys.argv[1:4]
    with open(os.path.join(requests, "expected.txt")) as expected_file:
        expected = [line.rstrip("\n") for line in expected_file]
    disagreements = []
    for index, sklearn in enumerate(expected):
        name = f"{index:03d}.json"
        with open(os.path.join(requests, "essaim", name), "rb") as body:
            essaim = essaim_label(post(essaim_url, body.read()))
        with open(os.path.join(requests, "mlflow", name), "rb") as body:
            mlflow = post(mlflow_url, body.read())["predictions"][0]
        if not essaim == mlflow == sklearn:
            disagreements.append((index, essaim, mlflow, sklearn))
    print(json.dumps({"requests": len(expected), "disagreements": len(disagreements)}))
    if len(disagreements) * 100 > len(expected):
        index, essaim, mlflow, sklearn = disagreements[0]
        raise SystemExit(f"request {index}: essaim says {essaim}, MLflow {mlflow}, "
                         f"scikit-learn {sklearn}")


if __name__ == "__main__":
    main()
