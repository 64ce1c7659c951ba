"""Provenance: what a run was computed with, recorded in config.json, named in the banner and listed
on the protocol page."""
import json
import platform
import shutil
from pathlib import Path

import pytest

from cxrdrift import book, chapter, pretrain, provenance
from cxrdrift import config as cfg
from cxrdrift.artifacts import read_resolved

REPO = Path(__file__).resolve().parents[1]
EPYC = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n"
        "flags\t\t: fpu sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 sha_ni\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512_bf16\n")


def test_cpu_reads_model_and_vector_extensions_in_a_fixed_order(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(EPYC)
    found = provenance.cpu(cpuinfo)
    assert found["model"] == "AMD EPYC 9R14"
    assert found["vector_extensions"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                          "avx512_vnni", "avx512_bf16"]
    assert pretrain.native_bf16(cpuinfo)
    cpuinfo.write_text(EPYC.replace(" avx512_bf16", ""))
    assert not pretrain.native_bf16(cpuinfo)
    assert provenance.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("extensions, gpus, phrase", [
    (["avx2", "avx512f", "avx512_bf16"], [], "2-core CPU with AVX-512 and native bfloat16"),
    (["avx2", "avx512f", "amx_bf16"], [], "2-core CPU with AVX-512 and native bfloat16"),
    (["avx2", "avx512f"], [], "2-core CPU with AVX-512, without native bfloat16"),
    (["avx", "avx2", "fma"], [], "2-core CPU with AVX2, without AVX-512"),
    (["sse4_2", "avx"], [], "2-core CPU without AVX2"),
    (["asimd", "bf16"], [], "2-core Arm CPU with bfloat16"),
    (["avx2"], [{"name": "NVIDIA H200", "compute_capability": "9.0"}], "NVIDIA H200 GPU"),
    (["avx2"], [{"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}] * 4, "4 × NVIDIA A100-SXM4-80GB GPUs"),
])
def test_machine_class_names_the_class_the_time_targets_use(extensions, gpus, phrase):
    record = {"cpu": {"model": "x", "cores": 2, "vector_extensions": extensions}, "gpus": gpus}
    assert provenance.machine_class(record) == phrase


def test_setup_records_the_environment_and_the_banner_names_the_machine(tmp_path):
    import keras
    import numpy
    import tensorflow as tf

    config = chapter.setup({"profile": "smoke", "run_dir": str(tmp_path / "run")}, banner=False)
    recorded = read_resolved(config.run_dir)["environment"]
    assert (recorded["python"], recorded["tensorflow"], recorded["keras"], recorded["numpy"], recorded["cxrdrift"]) \
        == (platform.python_version(), tf.__version__, keras.__version__, numpy.__version__, "0.1.0")
    assert recorded["cpu"] == provenance.cpu() and recorded["gpus"] == provenance.gpus()
    banner = chapter.banner_markdown(config, read_resolved(config.run_dir))
    assert f"| Machine | {provenance.machine_class(recorded)} | not reported |" in banner
    assert "| Machine | not recorded yet | not reported |" in chapter.banner_markdown(config, {})


def test_environment_table_lists_versions_and_flags_and_is_kept_without_a_run(tmp_path):
    record = {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6", "cxrdrift": "0.1.0",
              "installed_from": "requirements/cpu.lock", "platform": "Linux-x86_64",
              "cpu": {"model": "AMD EPYC", "cores": 2, "vector_extensions": ["avx2", "avx512f", "avx512_bf16"]},
              "gpus": []}
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {}, "resolved": {"environment": record}}))
    table = book.write_environment_table(tmp_path, run)
    assert table == tmp_path / "book" / "chapters" / "environment.md"
    lines = table.read_text().splitlines()
    assert "| Machine | 2-core CPU with AVX-512 and native bfloat16 |" in lines
    assert "| Vector extensions | `avx2`, `avx512f`, `avx512_bf16` |" in lines
    assert "| TensorFlow | 2.21.0 |" in lines and "| Keras | 3.15.1 |" in lines and "| NumPy | 2.4.6 |" in lines
    assert "| Python | 3.11.7 |" in lines and "| GPU | none |" in lines
    assert book.write_environment_table(tmp_path, None).read_text() == table.read_text()
    shutil.rmtree(tmp_path / "book")
    assert "recorded no environment" in book.write_environment_table(tmp_path, None).read_text()


def test_the_protocol_page_of_a_built_book_shows_the_environment(tmp_path):
    from test_book import make_tiny_book

    make_tiny_book(tmp_path)
    shutil.copy(REPO / "book" / "protocol.md", tmp_path / "book" / "protocol.md")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/protocol\n")
    config = chapter.setup({"profile": "smoke", "run_dir": str(tmp_path / "run")}, banner=False)
    page = (book.build_book(tmp_path, run_dir=config.run_dir) / "book" / "protocol.html").read_text()
    recorded = read_resolved(config.run_dir)["environment"]
    assert "The machine and software that built this book" in page
    assert f"<td><p>{recorded['tensorflow']}</p></td>" in page
    assert f"<td><p>{provenance.machine_class(recorded)}</p></td>" in page
    for flag in recorded["cpu"]["vector_extensions"]:
        assert f'<span class="pre">{flag}</span>' in page
