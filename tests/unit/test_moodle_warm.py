"""cloudinit/web/vmbuild-moodle-warm.sh, the web server's warming of Moodle's first pages: what
it asks for, read from a login page shaped as Moodle 4.5 writes it (lib/classes/output's
page_requirements_manager, lib/requirejs/moodle-config.js)."""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "cloudinit" / "web" / "vmbuild-moodle-warm.sh"
PAGE = Path(__file__).parent / "data" / "moodle-login-page.html"
WWW = "http://moodle.moodle.internal"


def assets(www: str, page: str) -> list[str]:
    res = subprocess.run(["sh", str(SCRIPT), "assets", www], input=page, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_it_asks_for_every_stylesheet_and_script_as_a_browser_would():
    got = assets(WWW, PAGE.read_text())
    assert got == sorted(set(got))
    assert f"{WWW}/theme/styles.php/boost/1733475123_1/all" in got                        # the theme's CSS
    assert f"{WWW}/lib/requirejs.php/1733475123/core/first.js" in got                     # every AMD module
    assert f"{WWW}/lib/javascript.php/1733475123/lib/jquery/jquery-3.7.1.min.js" in got   # RequireJS adds .js
    assert f"{WWW}/theme/yui_combo.php?rollup/3.18.1/yui-moodlesimple-min.js&m=1" in got  # &amp; undone
    assert f"{WWW}/lib/javascript.php/1733475123/lib/javascript-static.js" in got
    # not an asset (a page, an image), or not this site's
    assert not [u for u in got if "forgot_password" in u or "image.php" in u or "elsewhere" in u]
    assert len(got) == 7, got


def test_a_wwwroot_is_matched_as_text_not_as_a_pattern():
    # a wwwroot with a path, and one whose characters are shell patterns
    page = PAGE.read_text().replace(WWW, "http://lms.example.org/moodle")
    got = assets("http://lms.example.org/moodle", page)
    assert len(got) == 7 and all(u.startswith("http://lms.example.org/moodle/") for u in got), got
    assert assets("http://*", page) == []
    assert assets("http://lms.example.org/moodle", "<html>no links</html>") == []


def test_it_is_bounded_and_leaves_a_server_without_moodle_alone(tmp_path):
    many = "".join(f'<link href="{WWW}/theme/styles.php/boost/{i}/all" />\n' for i in range(100))
    assert len(assets(WWW, many)) == 40
    res = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, VMBUILD_MOODLE=str(tmp_path)))
    assert res.returncode == 0 and "nothing to warm" in res.stdout, res
    assert subprocess.run(["sh", str(SCRIPT), "bogus"], capture_output=True, timeout=30).returncode == 2
