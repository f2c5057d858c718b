import sys
import numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import run_tests as RT, model as M
rng = np.random.default_rng(99)
cases = [  # M, N, K, scheme, forced splits (0 = auto plan, 132 SMs), lda pad
  (256, 64, 16, M.CHANNEL, 1, 0), (257, 64, 32, M.CHANNEL, 2, 0), (512, 128, 256, M.GROUP128, 0, 0),
  (300, 64, 64, M.MX32, 1, 0), (100, 128, 96, M.MX32, 2, 8), (256, 128, 1040, M.CHANNEL, 0, 0),
  (256, 192, 1024, M.GROUP128, 0, 0), (20, 128, 1056, M.MX32, 0, 24), (511, 320, 2080, M.CHANNEL, 5, 0),
]
allok = True
for c in cases:
    for ok, msg in RT.dense_case(rng, c[0], c[1], c[2], c[3], c[4], lda_pad=c[5], with_bias=True):
        allok &= ok
        print(c, "OK " if ok else "FAIL", msg, flush=True)
print("ALL OK" if allok else "FAILURES")
