"""setup.cfg's package_data names exactly the package's data files, so `pip install .` ships what the code reads."""

import configparser
import glob
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tftrt_toolkit"


def _package_data_globs():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [item.strip() for item in config["options.package_data"]["tftrt_toolkit"].split(",") if item.strip()]


def _matches(pattern):
    # setuptools expands package_data patterns with glob(recursive=True) and keeps files only.
    return {pathlib.Path(path) for path in glob.glob(str(PACKAGE / pattern), recursive=True) if pathlib.Path(path).is_file()}


def test_every_package_data_glob_matches_a_file():
    empty = [pattern for pattern in _package_data_globs() if not _matches(pattern)]
    assert empty == [], f"package_data globs that match no file in tftrt_toolkit/: {empty}"


def test_every_data_file_in_the_package_is_shipped():
    data_files = {path for path in PACKAGE.rglob("*")
                  if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts}
    shipped = set().union(*(_matches(pattern) for pattern in _package_data_globs()))
    missing = sorted(str(path.relative_to(ROOT)) for path in data_files - shipped)
    assert data_files, "the scan found no data files; the op table at least should be there"
    assert missing == [], f"add these to [options.package_data] in setup.cfg or `pip install .` leaves them out: {missing}"
