"""A module whose import starts a thread: test_zygote asks a zygote to preload it, which the zygote must
refuse (a fork of a process with a second thread would not be safe). onnxruntime's import starts one on
some machines and not on others, so the test cannot lean on it."""

import threading
import time

threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
