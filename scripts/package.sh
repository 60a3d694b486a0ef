#!/usr/bin/env bash
# Builds the Azure Batch application package of coldpath:
#   dist/coldpath-<version>.zip  =  coldpath (stripped release binary), jobs/, schemas/
# at the zip's root, so on a node the binary is $AZ_BATCH_APP_PACKAGE_coldpath_<version>/coldpath
# (version with every character but letters and digits as `_`: 0.1.0 -> 0_1_0).
#
# The release build takes about 30 minutes from scratch on 2 cores (polars, deltalake).
# COLDPATH_PACKAGE_BINARY=<path> packages that binary instead of building one (CI, tests).
# The commit in `coldpath --version` comes from git, or from COLDPATH_GIT_COMMIT.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coldpath-target}"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "package.sh: no version in Cargo.toml" >&2; exit 2; }
command -v zip >/dev/null || { echo "package.sh: zip is needed (apt-get install zip)" >&2; exit 2; }

binary="${COLDPATH_PACKAGE_BINARY:-}"
if [ -z "$binary" ]; then
    cargo build --release --locked --bin coldpath >&2
    binary="$CARGO_TARGET_DIR/release/coldpath"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 "$binary" "$stage/coldpath"
# The release profile strips already; a binary given from elsewhere may not be.
if command -v strip >/dev/null; then strip "$stage/coldpath"; fi
cp -R jobs schemas "$stage/"

built=$("$stage/coldpath" --version)
case "$built" in
    "coldpath $version "*) ;;
    *) echo "package.sh: the binary says '$built', Cargo.toml says $version" >&2; exit 1 ;;
esac

# The newest glibc symbol version the binary needs: the node image must have it.
glibc=unknown
if command -v objdump >/dev/null; then
    glibc=$(objdump -T "$stage/coldpath" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -n 1)
fi

mkdir -p dist
zip_file="dist/coldpath-$version.zip"
rm -f "$zip_file"
(cd "$stage" && zip -q -r "$OLDPWD/$zip_file" coldpath jobs schemas)

variable="AZ_BATCH_APP_PACKAGE_coldpath_$(printf '%s' "$version" | tr -c 'A-Za-z0-9' '_' | tr 'A-Z' 'a-z')"
cat <<INFO
$zip_file ($(du -h "$zip_file" | cut -f1); binary $(du -h "$stage/coldpath" | cut -f1))
  $built; needs ${glibc/_/ } or newer (Ubuntu 22.04 has 2.35, Ubuntu 24.04 2.39, Debian 12 2.36)
Upload it as version $version of the Batch application \`coldpath\`:
  az batch application package create --resource-group <rg> --name <batch-account> \\
      --application-name coldpath --version-name $version --package-file $zip_file
On a node, Batch unzips it to \$$variable:
  /bin/sh -c "exec \$$variable/coldpath adf"
INFO
