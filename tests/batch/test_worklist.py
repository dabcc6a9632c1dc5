import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlab.batch import WorkListSpec, collect_items
from depthlab.cli import main


def test_matching_rule_and_output_keys(tmp_path, write_item):
    write_item(tmp_path / "in", "a", 0)
    write_item(tmp_path / "in" / "sub", "b", 1)
    items = collect_items(WorkListSpec(images=[str(tmp_path / "in")], out=str(tmp_path / "out")))
    assert [i.key for i in items] == ["a_colors", "sub/b_colors"]
    assert items[1].depth == tmp_path / "in" / "sub" / "b_depth.png"
    assert items[1].out_prefix == tmp_path / "out" / "sub" / "b_colors"


def test_color_suffix_images_are_inputs(tmp_path, write_item, capsys):
    """issue 9 item 4: ``*_color.png`` is an image name hint, not an excluded output."""
    for i, stem in enumerate(["x", "y"]):
        write_item(tmp_path / "in", stem, i, image_suffix="_color")
    for spec in (str(tmp_path / "in"), str(tmp_path / "in" / "*_color.png")):
        items = collect_items(WorkListSpec(images=[spec], out=str(tmp_path / "out")))
        assert [(i.image.name, i.depth.name) for i in items] == [
            ("x_color.png", "x_depth.png"),
            ("y_color.png", "y_depth.png"),
        ]
    assert (
        main(
            [
                "complete",
                str(tmp_path / "in" / "*_color.png"),
                "--depth-scale",
                "1000",
                "--method",
                "nearest",
                "--out",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "2 completed" in capsys.readouterr().out
    assert (tmp_path / "out" / "x_color_depth.npy").is_file()


def test_outputs_in_the_input_folder_are_never_inputs(tmp_path, write_item, capsys):
    """issue 9 item 1: out == the input folder, rerun with --overwrite: same results, inputs untouched."""
    data = tmp_path / "data"
    depth = {stem: write_item(data, stem, i) for i, stem in enumerate(["a", "b"])}
    inputs_before = {p.name: p.read_bytes() for p in data.iterdir()}
    args = [
        "complete",
        str(data),
        "--depth-scale",
        "1000",
        "--out",
        str(data),
        "--format",
        "npy,png16,color",
        "--method",
        "nearest",
        "--quiet",
    ]
    assert main(args) == 0
    first = {stem: np.load(data / f"{stem}_colors_depth.npy") for stem in depth}
    for stem, stored in depth.items():
        known = stored > 0
        assert np.array_equal(first[stem][known], stored[known] / np.float32(1000))  # metres, not km
    assert main(args) == 0
    assert "0 completed, 2 already done" in capsys.readouterr().out
    assert main([*args, "--overwrite"]) == 0
    assert "2 completed" in capsys.readouterr().out
    for stem in depth:
        assert np.array_equal(np.load(data / f"{stem}_colors_depth.npy"), first[stem])
    for name, content in inputs_before.items():
        assert (data / name).read_bytes() == content
    # another --out: the outputs recorded in data/ are still not taken as images or depth
    items = collect_items(WorkListSpec(images=[str(data)], out=str(tmp_path / "elsewhere")))
    assert [(i.image.name, i.depth.name) for i in items] == [
        ("a_colors.png", "a_depth.png"),
        ("b_colors.png", "b_depth.png"),
    ]


def test_outputs_without_a_manifest_are_never_inputs(tmp_path, write_item, capsys):
    """issue 9 item 1 with the results manifest gone (deleted, or the files copied elsewhere).

    The PNG results carry depthlab's marker; the ``.npy`` next to them is known by its marked
    siblings. Files the user wrote with the same names but no marker stay inputs.
    """
    from depthlab import io

    data = tmp_path / "data"
    depth = {stem: write_item(data, stem, i) for i, stem in enumerate(["a", "b"])}
    inputs_before = {p.name: p.read_bytes() for p in data.iterdir()}
    args = ["complete", str(data), "--depth-scale", "1000", "--method", "nearest", "--quiet"]
    formats = ["--format", "npy,png16,color,panel"]
    assert main([*args, "--out", str(data), *formats]) == 0
    first = {stem: np.load(data / f"{stem}_colors_depth.npy") for stem in depth}
    (data / "depthlab-results.jsonl").unlink()
    assert io.is_depthlab_output(data / "a_colors_color.png") and not io.is_depthlab_output(
        data / "a_depth.png"
    )
    # another --out: images and depth are the originals, not the results
    items = collect_items(WorkListSpec(images=[str(data)], out=str(tmp_path / "elsewhere")))
    assert [(i.image.name, i.depth.name) for i in items] == [
        ("a_colors.png", "a_depth.png"),
        ("b_colors.png", "b_depth.png"),
    ]
    # the same folder again with --overwrite: the same results, no input changed
    assert main([*args, "--out", str(data), *formats, "--overwrite"]) == 0
    assert "2 completed" in capsys.readouterr().out
    for stem in depth:
        assert np.array_equal(np.load(data / f"{stem}_colors_depth.npy"), first[stem])
    for name, content in inputs_before.items():
        assert (data / name).read_bytes() == content
    # a result copied into another folder is not an image there; an unmarked picture is
    other = tmp_path / "other"
    other.mkdir()
    (other / "a_colors_color.png").write_bytes((data / "a_colors_color.png").read_bytes())
    Image.open(data / "a_colors.png").save(other / "c_color.png")
    items = collect_items(WorkListSpec(images=[str(other)], out=str(tmp_path / "o2")))
    assert [i.image.name for i in items] == ["c_color.png"]
    # a user's own depth file with an output-like name but no marked sibling stays an input
    np.save(other / "c_color_depth.npy", np.full((24, 32), 2.0, np.float32))
    assert collect_items(WorkListSpec(images=[str(other)], out=str(tmp_path / "o2")))[0].depth.name == (
        "c_color_depth.npy"
    )


def test_output_that_would_replace_an_input_is_refused(tmp_path, write_item, capsys):
    write_item(tmp_path, "a", 0, image_suffix="")  # a.png + a_depth.png: png16 of a is a_depth.png
    before = (tmp_path / "a_depth.png").read_bytes()
    status = main(
        [
            "complete",
            str(tmp_path),
            "--depth-scale",
            "1000",
            "--out",
            str(tmp_path),
            "--format",
            "npy,png16",
            "--method",
            "nearest",
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "would replace an input" in err and "--out" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "a_depth.png").read_bytes() == before
    assert not (tmp_path / "a_depth.npy").exists()


def test_two_images_with_one_output_name_are_refused(tmp_path, write_item):
    write_item(tmp_path, "a", 0, image_suffix="")
    Image.open(tmp_path / "a.png").save(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="would both write"):
        collect_items(WorkListSpec(images=[str(tmp_path)], out=str(tmp_path / "out")))


def test_folder_of_symlinks(tmp_path, write_item, capsys):
    """issue 9 item 10: symlinked files (and a symlinked sub-folder) work; outputs use the link names."""
    real = tmp_path / "real"
    write_item(real, "a", 0)
    write_item(real / "deep", "b", 1)
    links = tmp_path / "links"
    links.mkdir()
    for name in ("a_colors.png", "a_depth.png"):
        os.symlink(real / name, links / f"l{name}")
    os.symlink(real / "deep", links / "sub")
    assert (
        main(
            [
                "complete",
                str(links),
                "--depth-scale",
                "1000",
                "--method",
                "linear",
                "--out",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "2 completed" in capsys.readouterr().out
    assert (tmp_path / "out" / "la_colors_depth.npy").is_file()
    assert (tmp_path / "out" / "sub" / "b_colors_depth.npy").is_file()


def test_manifest_out_column_must_stay_below_out(tmp_path, write_item):
    write_item(tmp_path, "a", 0)
    (tmp_path / "list.csv").write_text("image,depth,out\na_colors.png,a_depth.png,../escape\n")
    with pytest.raises(ValueError, match="relative path below --out"):
        collect_items(WorkListSpec(manifest=str(tmp_path / "list.csv"), out=str(tmp_path / "out")))
    (tmp_path / "list.csv").write_text("image,depth,out\na_colors.png,a_depth.png,x/first\n")
    (item,) = collect_items(WorkListSpec(manifest=str(tmp_path / "list.csv"), out=str(tmp_path / "out")))
    assert item.key == "x/first" and item.depth == Path(tmp_path / "a_depth.png")
