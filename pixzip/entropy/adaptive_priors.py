"""The adaptive stage's prior files (entropy/adaptive.py, docs/ADAPTIVE.md "Priors"): a prior is the learned
state a level's fresh state starts from, part of the format, so each file's SHA-256 is fixed here and a file
that differs is refused rather than decode differently."""

from __future__ import annotations

import functools
import hashlib
import io
from pathlib import Path

import numpy as np

PRIORS = Path(__file__).resolve().parent / "priors"
# A prior is part of the format (files name their level, the level its prior): each file's SHA-256 is
# fixed here, and one that differs is refused rather than decode differently. Made by
# pixzip/training/adaptive_prior.py from training photographs only (docs/ADAPTIVE.md).
PRIOR_SHA256: dict[str, str] = {
    "level3-c3-h48-b4.npy": "58626e5597e226bb4a0c60631b0ee7016a0f8f9634f35f13ce3e479aa16a49bc",
    "level3-c3-h96-b8.npy": "2481f083fc1eda06b4c24ceb01249dbb65d2e5643dccad20e163866efea57f9e",
    "level3-c1-h48-b4.npy": "034cf2f1173a64569553e5176e3c2fdc397f5169c987c77ed098b3ce426f14e9",
    "level4-c3-h48-b4.npy": "43010feca77915154bf34d33c9047d61d87dfa30e6becfb1174eb2db5e2724a3",
    "level4-c3-h96-b8.npy": "e368f34014b077f00ed15766cf34b0034450ba0d0f2f818574c3c8b87ee2813a",
    "level4-c1-h48-b4.npy": "9eadda5cda6b00e8e2d840e2554ff9e6adfaadd5172e83b755857d9a849d2247",
    "level4-c3-h48-b4+c3-h96-b8.npy": "9b47d4368852d183b2e0072b1d11cc7289ad4adaed8b5e6be9e7b4bc265b4602",
    "level5-c3-h48-b4.npy": "4028644b16631e438d0a5fb5c1d526900a5765822f43e9ec3436aeaf65f722ff",
    "level5-c3-h96-b8.npy": "71e6b3fa7be6eec8a54e8832fc75bb86938323bbcc19fe128d7027c3f3ee8522",
    "level5-c1-h48-b4.npy": "a7e95660acbe79d7cf19fa8499e01c387369f15129cb3cdb7f363db17d9105a8",
    "level6-c3-h48-b4.npy": "96127a7f852ed38b6e58d12075207ed67c70708a9338cc1f6e6f80d5442a52e2",
    "level6-c3-h96-b8.npy": "16df7c0c117ca787ed0ba09a16cdc6603107b2d62525adb1330d68cd6a9afde8",
    "level6-c1-h48-b4.npy": "b99999c43a7de318398f65fb72fb1f56116cd8f13a6630e8a58b888f84166ed1",
    "level6-c3-h48-b4+c3-h96-b8.npy": "d12b568b68875169d1247ee3d8249ba90fae432bad86b2fd35f87450308df957",
    "level7-c3-h48-b4.npy": "b993abb139f0548af9f53478ef3451d265d389a81d05e4f340f4ab988ab41254",
    "level7-c3-h96-b8.npy": "04f0e77e922c2a4d45ee2a7e97663cb3aa9670fcdfa18690cd6bb4d536259e5c",
    "level7-c1-h48-b4.npy": "836cbd073a7a5e768ede385b69136eb0cfe69858c00b2937197683bc90bde1d5",
    "level8-c3-h48-b4.npy": "59b50b021c631aad5210844c9e95cfd87d9f34476b790a4bc8d79a813cc79f38",
    "level8-c3-h96-b8.npy": "cba06cfaf91e20ae522e1431d10bdd02d5447102bd872909b489c7282bfb807d",
    "level8-c1-h48-b4.npy": "cfe700c2c14ecb8325c49c57e30bfc790c08ea38839107b1d54147e558aace45",
    "level8-c3-h48-b4+c3-h96-b8.npy": "2322769a0b388570539f8faf44d540549e0dbf2095bc0aba92711093e8cc2901",
    "level8-c3-h48-b4+c3-h96-b8+c3-h96-b8.npy": "f841bd6c3030accd82531c33296202c149f089f525f5daed65f197d4f814ad13",
    "level9-c3-h48-b4.npy": "11f3da349d25947943d02ec44635f779be6614d789471b56417d4f514d10d486",
    "level9-c3-h96-b8.npy": "fc14a7e04f06f3742175a92cb0a803996c52f40ca229da19fb7a24467f2f719f",
    "level9-c1-h48-b4.npy": "d644249714ee468dc62818b862e515b91bf0232c5b6700cc3fe614793fef76fd",
    "level10-c3-h48-b4.npy": "cfd2b9dddbdf80117066ec5212b3a0ab6de60c6f2b8c71529b6f393fb848b4ca",
    "level10-c3-h96-b8.npy": "b87fc15b7efef52f50e812bb9831ba25feb06e944423037f1cd76b4294dbde84",
    "level10-c1-h48-b4.npy": "a9e3cb27cee7be53a8d10e84f85620368e6e1950f47c0c3fe327ac8e35fa179b",
    "level10-c3-h48-b4+c3-h96-b8.npy": "cff43433eadb031c8f389b938b925609ed1df38ac36bb02bd7f93952fbaf0c8c",
    "level10-c3-h48-b4+c3-h96-b8+c3-h96-b8.npy": "0c2280f07403c5c79527d69296d3f1c0133b1a82d93a5ef999d3a3c492d6d6af",
    "level11-c3-h48-b4.npy": "ff2fabc93f3f26b30d23bf7f7b3f6b8e4756c40a6f2aad98efd768d03a115422",
    "level11-c3-h96-b8.npy": "8c97c3b2c906a5177493b4c9c70c276f59ed8736a081a2c5bd6dfe635361ffe5",
    "level11-c1-h48-b4.npy": "ebb25c4f0730f3e35353354a0bf560984b5ba3ed95ee7bbe0376ee312614e49e",
    "level12-c3-h48-b4.npy": "2a1c0d1cc8e59a301b0a6f28e89a1b6cb74d98b7dd02ed8c48af286848eb8993",
    "level12-c3-h96-b8.npy": "1a1bc98602db9845a7e7efc0efbfc0d48e0c5b9cdcd9f884d8905239ee485531",
    "level12-c1-h48-b4.npy": "979394b397d1da4cec0ed240fdad2ad6dfe98ab7543e65ca2e97851a8187c1da",
    "level12-c3-h48-b4+c3-h96-b8.npy": "437113da492e3821a2e414c7986975a33e94a8249d559ab8aec369eb963de2cb",
    "level12-c3-h48-b4+c3-h96-b8+c3-h96-b8.npy": "743029054a2bf9bf86387c3e59b0f130999184d9c73e476f5e27f6fca7b837ac",
    # levels 17 and 18 (session 33): palette index planes of quantised training tiles (adaptive_prior --palettes)
    "level17-c1-h48-b4.npy": "c30b7ddb035499ce0e6f7dbf465c1921467eba2c679b979442409bb9f8cb78e6",
    "level18-c1-h48-b4.npy": "8d7c57f8c4be2bfe3e55c3ea3df5b1a975330aef464291f1cd50bc351348f747",
}


@functools.lru_cache(maxsize=None)
def load_prior(name: str) -> np.ndarray:
    data = (PRIORS / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != PRIOR_SHA256.get(name):
        raise ValueError(f"adaptive stage: prior {name} is damaged or unknown (reinstall pixzip)")
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if array.dtype != np.int32 or array.ndim != 1:
        raise ValueError(f"adaptive stage: prior {name} is not a flat int32 array")
    return np.ascontiguousarray(array)
