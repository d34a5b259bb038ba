#!/bin/sh
# Moodle's first pages built on this web server before any client asks for them (vmbuild).
#
# Why: Moodle builds its caches on demand (language strings, the RequireJS bundle of every AMD
# module, the theme's CSS compiled from SCSS). Under emulation the first visit after `up` or an
# upgrade waited half a minute for the login page. Here the server asks itself for the login
# page and every stylesheet and script the page links, through Apache as a browser would (the
# theme's CSS by HTTP, not by admin/cli/build_theme_css.php: that one bumps the theme's
# revision on every run, and two web servers warming at once would each make the other's
# stale).
#
#   vmbuild-moodle-warm                 warm this server (as root; bounded in count and time)
#   vmbuild-moodle-warm assets WWWROOT  print what a page on stdin links under WWWROOT
set -uf   # no globbing: URLs hold '?' and '*'
MOODLE=${VMBUILD_MOODLE:-/var/www/moodle}

assets() {
    # Moodle's HTML escapes & in attributes; the RequireJS config holds its base URL as plain
    # text, and a browser's first request there is core/first.js: every non-lazy AMD module
    # in one bundle, cached per JS revision
    sed 's/&amp;/\&/g' | grep -oE "https?://[^\"'<> ]+" | while read -r url; do
        case "$url" in
            "$1"/theme/styles.php/*|"$1"/theme/yui_combo.php\?*|"$1"/lib/javascript.php/*.js) echo "$url" ;;
            # RequireJS's paths: it adds .js to what it loads
            "$1"/lib/javascript.php/*) echo "$url.js" ;;
            "$1"/lib/requirejs.php/*/) echo "${url}core/first.js" ;;
        esac
    done | sort -u | head -n 40
}

fetch() {
    # to this server's Apache whatever the URL's host (the site's name may resolve to the VIP)
    curl -s -o "${2:-/dev/null}" --max-time 300 --connect-to ::127.0.0.1:80 -w '%{http_code}' "$1"
}

warm() {
    if [ ! -f "$MOODLE/version.php" ]; then
        echo "vmbuild: Moodle's code is not installed: nothing to warm"
        return 0
    fi
    started=$(date +%s)
    www=$(cd "$MOODLE" && runuser -u www-data -- php -r \
        'define("CLI_SCRIPT", true); require "config.php"; echo $CFG->wwwroot;') || return 1
    page=$(mktemp)
    code=$(fetch "$www/login/index.php" "$page")
    urls=$(assets "$www" < "$page")
    rm -f "$page"
    n=0
    for url in $urls; do
        fetch "$url" >/dev/null
        n=$((n + 1))
    done
    # the theme's CSS: while it compiles, styles.php sends Moodle's fallback sheet and builds
    # the real one after; asked again, it waits for that build (Moodle's lock) and caches it
    for url in $urls; do
        case "$url" in */theme/styles.php/*) fetch "$url" >/dev/null ;; esac
    done
    echo "vmbuild: Moodle's first pages warmed in $(( $(date +%s) - started ))s (login page HTTP $code, $n stylesheets and scripts)"
}

case "${1:-}" in
    assets) assets "$2" ;;
    "") warm ;;
    *) echo "usage: vmbuild-moodle-warm [assets WWWROOT]" >&2; exit 2 ;;
esac
