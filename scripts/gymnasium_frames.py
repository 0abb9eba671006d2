"""Reference frames for the classic-control drawings test: Gymnasium's
render_mode="rgb_array" frame of each env in each given state, written as raw
HxWx3 bytes to OUT_DIR/<index>.rgb.

Usage: python gymnasium_frames.py OUT_DIR REQUEST_JSON
REQUEST_JSON: [{"id": ..., "state": [...]}, ...]
"""

import json
import os
import sys

import numpy as np
import gymnasium as gym


def main():
    out_dir, request = sys.argv[1], json.loads(sys.argv[2])
    for i, case in enumerate(request):
        env = gym.make(case["id"], render_mode="rgb_array")
        env.reset(seed=0)
        env.unwrapped.state = np.array(case["state"], dtype=np.float64)
        frame = np.ascontiguousarray(env.render(), dtype=np.uint8)
        with open(os.path.join(out_dir, f"{i}.rgb"), "wb") as f:
            f.write(frame.tobytes())
        print(json.dumps({"index": i, "shape": list(frame.shape)}))
        env.close()


if __name__ == "__main__":
    main()
