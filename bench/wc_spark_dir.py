#!/usr/bin/env python3
"""Word count with PySpark on local[2], for bench/small_files.sh: a directory of many
small files (or one file) read with spark.read.text, words counted as essaim and
rust-wc count them.

usage: python3 bench/wc_spark_dir.py INPUT OUTDIR

Words are maximal runs of bytes other than ASCII whitespace (space, \\t, \\n, \\r,
vertical tab, form feed): Java's `\\s+` is exactly that set, and empty strings (a line
starting with a space) are dropped, so the counts equal essaim's and rust-wc's on UTF-8
text. A directory is read recursively (recursiveFileLookup), with Spark's defaults for
packing small files into partitions (maxPartitionBytes 128 MB, openCostInBytes 4 MB).
The output is written as `word<TAB>count` text parts under OUTDIR.

Prints one JSON line: startup_s (interpreter start to SparkSession ready), job_s
(reading, counting and writing the output), start_to_output_s (the two together, the
counterpart of essaim's wall_seconds, which counts its cluster's start), partitions (the
input's), and the pyspark version. Every socket binds to 127.0.0.1; the web UI is off.
"""
import time

STARTED = time.perf_counter()
import json
import os
import shutil
import sys

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

source, outdir = sys.argv[1], sys.argv[2]
shutil.rmtree(outdir, ignore_errors=True)
spark = (SparkSession.builder.master("local[2]").appName("essaim-small-files")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
READY = time.perf_counter()
lines = spark.read.option("recursiveFileLookup", "true").text(source)
words = (lines.select(F.explode(F.split(F.col("value"), r"\s+")).alias("word"))
         .where(F.col("word") != ""))
counts = words.groupBy("word").count()
(counts.select(F.concat_ws("\t", F.col("word"), F.col("count").cast("string")))
       .write.text(outdir))
WRITTEN = time.perf_counter()
partitions = lines.rdd.getNumPartitions()
version = spark.version
spark.stop()
print(json.dumps({
    "startup_s": round(READY - STARTED, 4),
    "job_s": round(WRITTEN - READY, 4),
    "start_to_output_s": round(WRITTEN - STARTED, 4),
    "partitions": partitions,
    "pyspark": version,
}), flush=True)
