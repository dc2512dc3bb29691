"""Checks before a batch-predict pipeline starts: Beam's options, the output prefix's shards, the input data."""

from __future__ import annotations

import dataclasses
import os
from typing import List, Sequence, Tuple

from tftrt_toolkit.data.images import IMAGE_EXTENSIONS, walk_directory
from tftrt_toolkit.data.skipped import SkippedFile, skipped_listing, skipped_summary
from tftrt_toolkit.errors import ConfigError, DataError, OutputError, first_line
from tftrt_toolkit.jobs.batch_predict.steps import ERRORS_SUFFIX, OUTPUT_FORMATS, require_beam


# --------------------------------------------------------------------------- options and outputs

def check_pipeline_args(pipeline_args: Sequence[str], *, other_flags: Sequence[str] = ()) -> List[str]:
    """The Beam pipeline options as a list; ConfigError for anything Beam would silently drop.

    Beam's PipelineOptions ignores options it does not know (with a log line), so a typo such
    as ``--direct_num_worker=2`` would run with the default; here it is an error instead,
    suggesting the closest Beam option or one of ``other_flags`` (the caller's own flag names).
    """
    require_beam()
    from apache_beam.options import pipeline_options

    # `--` only separates our flags from Beam's on a command line; Beam would stop parsing at it.
    args = [str(arg) for arg in pipeline_args if str(arg) != "--"]
    # The parser PipelineOptions.get_all_options builds: every options class's arguments,
    # aliases (--worker_machine_type) included; what it leaves over is what Beam would drop.
    parser = pipeline_options._BeamArgumentParser(allow_abbrev=False)
    for options_class in {str(cls): cls for cls in pipeline_options.PipelineOptions.__subclasses__()}.values():
        options_class._add_argparse_args(parser)  # pylint: disable=protected-access
    _, leftovers = parser.parse_known_args(args)
    unknown = []
    for index, arg in enumerate(leftovers):
        if arg.startswith("-"):
            unknown.append(arg.split("=", 1)[0])
        elif not (index and leftovers[index - 1].startswith("--") and "=" not in leftovers[index - 1]):
            raise ConfigError(f"unexpected argument {arg!r}; Beam pipeline options are --name=value")
    if unknown:
        import difflib

        candidates = sorted(set(pipeline_options.PipelineOptions([]).get_all_options()) | set(other_flags))
        hints = [match for flag in unknown for match in difflib.get_close_matches(
            flag.lstrip("-").replace("-", "_"), candidates, n=1, cutoff=0.75)]
        suggestion = f" (did you mean {', '.join('--' + hint for hint in hints)}?)" if hints else ""
        raise ConfigError(f"{', '.join(unknown)}: not a batch-predict flag or Beam pipeline option{suggestion}; see --help")
    return args


def shard_pattern(output_prefix: str, output_format: str, *, errors: bool) -> str:
    # [0-9] keeps PREFIX-errors-* out of the predictions' pattern.
    return f"{output_prefix}{ERRORS_SUFFIX if errors else ''}-[0-9]*-of-[0-9]*.{output_format}"


def matching_files(pattern: str) -> List[str]:
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def prepare_output(output_prefix: str, output_format: str, overwrite: bool) -> None:
    """Refuse (or, with ``overwrite``, delete) shards an earlier run left under this prefix.

    Stale shards would mix with new ones: a run with 4 shards after one with 8 leaves 4 old files.
    """
    from apache_beam.io.filesystems import FileSystems

    if output_prefix.endswith(("/", os.sep)) or not os.path.basename(output_prefix):
        raise OutputError(f"--output={output_prefix!r} is a directory; give a file name prefix, e.g. {output_prefix.rstrip('/')}/predictions")
    existing = []
    for format_ in OUTPUT_FORMATS:
        for errors in (False, True):
            existing += matching_files(shard_pattern(output_prefix, format_, errors=errors))
    if existing and not overwrite:
        raise OutputError(
            f"{len(existing)} output file(s) from an earlier run exist under {output_prefix!r} (e.g. {existing[0]}); "
            "pass --overwrite to replace them, or choose another --output prefix"
        )
    if existing:
        FileSystems.delete(existing)


def check_data(data_globs: Sequence[str]) -> None:
    """DataError naming each glob that matches nothing (checked with a 1-file listing, cheap on object stores)."""
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match(list(data_globs), limits=[1] * len(data_globs))
    except Exception as error:  # BeamIOError wraps per-pattern errors (bad scheme, no credentials)
        raise DataError(f"cannot list {', '.join(data_globs)}: {first_line(error)}") from error
    empty = [glob for glob, result in zip(data_globs, results) if not result.metadata_list]
    if empty:
        raise DataError(f"no files match {', '.join(repr(g) for g in empty)}; check the path and quote the glob so the shell leaves it alone")


@dataclasses.dataclass(frozen=True)
class DataFiles:
    """What ``--data`` names, split for the pipeline: globs Beam matches, and the images of local folders.

    A local folder is read as every other command reads it (``data.images.walk_directory``:
    recursive, sorted, hidden files and non-images left out and listed in ``skipped_files``,
    the folder's README/labels CSV ignored); globs (local, gs://, s3://) go to Beam as given.
    """

    globs: Tuple[str, ...]
    folder_images: Tuple[str, ...]
    skipped_files: Tuple[SkippedFile, ...]


def split_data(data: Sequence[str], *, strict: bool = False) -> DataFiles:
    """``data`` entries as globs and listed folder images; DataError for an empty folder, or (``strict``)
    one holding files that would be skipped."""
    globs, images, skipped = [], [], []
    for entry in data:
        if not os.path.isdir(entry):
            globs.append(entry)
            continue
        found = 0
        for item in walk_directory(entry):
            if isinstance(item, SkippedFile):
                skipped.append(item)
            else:
                images.append(str(item))
                found += 1
        if not found:
            raise DataError(f"no images in directory {entry} ({', '.join(IMAGE_EXTENSIONS)}, searched recursively); "
                            "add images or point --data elsewhere")
    if strict and skipped:
        raise DataError(f"strict data: {skipped_summary(skipped)}: {skipped_listing(skipped)}; fix or remove them, "
                        "or run without --strict_data to skip them")
    return DataFiles(tuple(globs), tuple(images), tuple(skipped))
