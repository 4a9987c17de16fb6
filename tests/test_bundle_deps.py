"""scripts/bundle_deps.py: the bundle's runtime closure, the package data build.spec collects, the lock."""

from __future__ import annotations

import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bundle_deps  # noqa: E402

from maskpix_desktop.selftest import METADATA_DISTS  # noqa: E402


def _fake_dist(site: Path, name: str, requires: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> Path:
    """Installed distribution ``name`` 1.0 in ``site``: METADATA with ``requires``, RECORD with ``files``."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(meta) + "\n", encoding="utf-8")
    for rel in files:
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    record = [*files, f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in record), encoding="utf-8")
    return info


def test_runtime_closure_follows_markers_and_extras_requested_anywhere(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site"
    _fake_dist(site, "mpxfake-a", ("mpxfake-g", "mpxfake-b"))  # b is reached first without extras
    _fake_dist(site, "mpxfake-g", ("mpxfake-b[x]",))  # then g asks for its extra x
    b_requires = ('mpxfake-c; extra == "x"', 'mpxfake-d; extra == "y"', 'mpxfake-e; python_version < "3"')
    _fake_dist(site, "mpxfake-b", (*b_requires, "mpxfake-f"))
    for name in ("mpxfake-c", "mpxfake-f"):
        _fake_dist(site, name)
    monkeypatch.syspath_prepend(str(site))

    closure = bundle_deps.runtime_closure([Requirement("mpxfake-a")])

    assert sorted(closure) == ["mpxfake-a", "mpxfake-b", "mpxfake-c", "mpxfake-f", "mpxfake-g"]


def test_runtime_closure_names_the_requirer_of_a_missing_distribution(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site"
    _fake_dist(site, "mpxfake-a", ("mpxfake-missing>=2",))
    monkeypatch.syspath_prepend(str(site))

    with pytest.raises(LookupError, match="mpxfake-missing .*required by mpxfake-a.* not installed"):
        bundle_deps.runtime_closure([Requirement("mpxfake-a")])


def test_data_files_keep_package_data_and_leave_out_code_headers_and_libraries(tmp_path) -> None:
    site = tmp_path / "lib" / "site"
    files = (
        "mpxpkg/__init__.py",
        "mpxpkg/_internals/deps.json",
        "mpxpkg/configs/model.yaml",
        "mpxpkg/_ext.cpython-311-x86_64-linux-gnu.so",
        "mpxpkg/libfoo.so.12",
        "mpxpkg/include/api.h",
        "mpxpkg/stubs.pyi",
        "mpxpkg/__pycache__/x.cpython-311.pyc",
        "mpxmodule.py",
        "../../bin/mpxtool",
    )
    info = _fake_dist(site, "mpxpkg", files=files)

    pairs = bundle_deps.data_files(md.PathDistribution(info))

    assert sorted(pairs) == [
        (str(site / "mpxpkg/_internals/deps.json"), "mpxpkg/_internals"),
        (str(site / "mpxpkg/configs/model.yaml"), "mpxpkg/configs"),
    ]


def test_bundle_datas_leave_hook_collected_and_cuda_distributions_to_their_hooks(tmp_path) -> None:
    site = tmp_path / "site"
    closure = {
        name: md.PathDistribution(_fake_dist(site, name, files=(f"{name.replace('-', '_')}/data.json",)))
        for name in ("torch", "pyside6-essentials", "nvidia-cublas", "mpxdata")
    }

    datas, names = bundle_deps.bundle_datas(closure)

    assert names == ["mpxdata"]
    assert datas == [(str(site / "mpxdata/data.json"), "mpxdata")]


def test_bundle_datas_of_the_runtime_closure_carry_kernels_dependency_data() -> None:
    """The failure this guards against: diffusers -> transformers -> kernels reads python_depends.json."""
    try:
        kernels = md.distribution("kernels")
    except md.PackageNotFoundError:
        pytest.skip("kernels is not installed (transformers no longer needs it)")
    closure = bundle_deps.runtime_closure(bundle_deps.direct_requirements())

    datas, names = bundle_deps.bundle_datas(closure)

    assert "kernels" in closure
    assert "kernels" in names and "open-clip-torch" in names
    depends = Path(kernels.locate_file("kernels/_internals/python_depends.json"))
    assert (str(depends), "kernels/_internals") in datas
    assert {bundle_deps.canonicalize_name(d) for d in METADATA_DISTS} <= set(closure)


def test_lock_from_report_pins_each_archive_with_its_sha256_and_leaves_out_the_project() -> None:
    report = {
        "install": [
            {
                "metadata": {"name": "Zeta_Pkg", "version": "2.0"},
                "download_info": {"url": "https://x/zeta.whl", "archive_info": {"hashes": {"sha256": "bb"}}},
            },
            {
                "metadata": {"name": "maskpix-desktop", "version": "0.1.0"},
                "download_info": {"url": "file:///work/main", "dir_info": {"editable": True}},
            },
            {
                "metadata": {"name": "alpha", "version": "1.0"},
                "download_info": {"url": "file:///w/alpha.whl", "archive_info": {"hashes": {"sha256": "aa"}}},
            },
        ]
    }

    text = bundle_deps.lock_from_report(report, header="# platform: test\n")

    assert text == (
        "# platform: test\nalpha==1.0 \\\n    --hash=sha256:aa\nzeta-pkg==2.0 \\\n    --hash=sha256:bb\n"
    )


def test_lock_from_report_refuses_an_archive_without_sha256() -> None:
    report = {
        "install": [{"metadata": {"name": "a", "version": "1"}, "download_info": {"url": "file:///a.whl"}}]
    }

    with pytest.raises(ValueError, match="a 1: no sha256 from file:///a.whl"):
        bundle_deps.lock_from_report(report)


def test_read_lock_names_the_file_and_line_of_an_unhashed_pin(tmp_path) -> None:
    lock = tmp_path / "bundle.lock"
    lock.write_text("# header\nalpha==1.0 \\\n    --hash=sha256:aa\nbeta==2.0\n", encoding="utf-8")

    with pytest.raises(ValueError, match=r"bundle.lock: line 3: 'beta==2.0'"):
        bundle_deps.read_lock(lock)


def test_lock_problems_name_a_direct_dependency_missing_or_out_of_range(tmp_path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "x"\ndependencies = ["torch>=3", "numpy"]\n'
        '[project.optional-dependencies]\nbundle = ["pyinstaller"]\n',
        encoding="utf-8",
    )
    lock = tmp_path / "bundle.lock"
    lock.write_text("torch==2.14.1 \\\n    --hash=sha256:aa\nnumpy==2.0 --hash=sha256:bb\n", encoding="utf-8")

    problems = bundle_deps.lock_problems(lock, pyproject)

    assert problems == [
        "torch>=3 (pyproject.toml) but the lock pins 2.14.1",
        "pyinstaller (pyproject.toml) is not in the lock",
    ]


def test_committed_lock_pins_pyproject_dependencies_and_the_metadata_the_self_test_checks() -> None:
    assert bundle_deps.lock_problems(bundle_deps.LOCK) == []
    pins = bundle_deps.read_lock(bundle_deps.LOCK)
    assert {bundle_deps.canonicalize_name(d) for d in METADATA_DISTS} <= set(pins)
    assert all(len(h) == 64 for _version, hashes in pins.values() for h in hashes)


@pytest.mark.parametrize("selftest_rc", [0, 1])
def test_ci_bundle_exit_status_is_the_self_tests_and_it_cleans_up(tmp_path, selftest_rc) -> None:
    """scripts/ci_bundle.sh (no dev venv here) passes the build script's status on and removes its output."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(ROOT / "scripts" / "ci_bundle.sh", scripts)
    fake_build = f'mkdir -p build dist/maskpix "$BUNDLE_VENV"\necho "self-test rc {selftest_rc}"\n'
    (scripts / "build_bundle.sh").write_text(fake_build + f"exit {selftest_rc}\n", encoding="utf-8")

    proc = subprocess.run(
        ["bash", str(scripts / "ci_bundle.sh")], capture_output=True, text=True, timeout=60, check=False
    )

    assert proc.returncode == selftest_rc, proc.stdout + proc.stderr
    assert f"self-test rc {selftest_rc}" in proc.stdout
    assert not any((tmp_path / name).exists() for name in ("build", "dist", ".venv-bundle"))


def test_ci_runs_the_bundle_check() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("bash scripts/ci_bundle.sh") for line in lines)
