"""Two vmbuild processes that need the same image at once build it once: the second waits for
the first and takes its result (the e2e files run side by side in CI and meet here)."""
import json
import multiprocessing
import time
from pathlib import Path

from vmbuilder.image import build
from vmbuilder.image.recipe import load_recipe


def _fake_build(recipe, progress):
    """Stands for mmdebstrap: slow, and leaves a marker per real build."""
    folder = build.image_folder(recipe)
    marks = folder.parent / "builds"
    marks.mkdir(exist_ok=True)
    (marks / f"{time.monotonic_ns()}").touch()
    time.sleep(1.5)
    folder.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (folder / name).write_text("x")
    (folder / "manifest.json").write_text(json.dumps({"recipe": recipe.name, "cmdline": recipe.cmdline}))
    return build.BuiltImage.load(folder)


def _one(cache: str, out, messages) -> None:
    import os
    os.environ["VMBUILD_CACHE"] = cache
    build._build = _fake_build
    image = build.build(load_recipe("debian12"), progress=messages.put)
    out.put(str(image.folder))


def test_a_second_builder_waits_and_takes_the_first_ones_image(tmp_path):
    ctx = multiprocessing.get_context("fork")
    out, messages = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_one, args=(str(tmp_path), out, messages)) for _ in range(2)]
    for p in procs:
        p.start()
        time.sleep(0.3)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    folders = {out.get(timeout=5), out.get(timeout=5)}
    assert len(folders) == 1
    assert len(list((Path(folders.pop()).parent / "builds").iterdir())) == 1
    said = []
    while not messages.empty():
        said.append(messages.get())
    assert any("waiting for another vmbuild building the debian12 image" in m for m in said), said
