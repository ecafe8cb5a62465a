"""Writes the data.pkl of a small state dict as Python's pickle module does
for torch.save, without torch: stand-in torch modules give the globals the
same names. The Go tests compare torchbin's writer with these bytes and read
them back (state_dict_p2.pkl: torch.save's default protocol 2;
state_dict_p4.pkl: pickle_protocol=4; small_p4.pkl: a two-tensor dict at
protocol 4, whose storages fit a fuzzing seed).

    python3 gen_pickles.py
"""
import collections
import io
import pickle
import sys
import types

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
torch._utils = utils


def _rebuild_tensor_v2(*args):
    return args


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2
for name in ["FloatStorage", "LongStorage", "BFloat16Storage"]:
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)


class Storage:
    def __init__(self, typ, numel):
        self.typ, self.numel = typ, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride))

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, self.args + (False, collections.OrderedDict()))


s0 = Storage(torch.FloatStorage, 600)
s1 = Storage(torch.LongStorage, 3)
s2 = Storage(torch.BFloat16Storage, 70000)
sd = collections.OrderedDict()
sd["a.weight"] = Tensor(s0, 0, [300, 2], [2, 1])
sd["a.t"] = Tensor(s0, 1, [2, 299], [1, 2])
sd["ids"] = Tensor(s1, 0, [1, 3], [3, 1])
sd["big"] = Tensor(s2, 0, [70000], [1])
sd["scalar"] = Tensor(s1, 2, [], [])
sd["four"] = Tensor(s0, 0, [2, 1, 3, 100], [300, 300, 100, 1])
sd._metadata = collections.OrderedDict({"": {"version": 1}})

small = collections.OrderedDict()
s3 = Storage(torch.FloatStorage, 4)
small["w"] = Tensor(s3, 0, [2, 2], [2, 1])
small["w.t"] = Tensor(s3, 0, [2, 2], [1, 2])

for proto, obj, name in ((2, sd, "state_dict_p2"), (4, sd, "state_dict_p4"), (4, small, "small_p4")):
    id_map = {}

    def persistent_id(obj):
        if isinstance(obj, Storage):
            key = id_map.setdefault(id(obj), str(len(id_map)))
            return ("storage", obj.typ, key, "cpu", obj.numel)
        return None

    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=proto)
    p.persistent_id = persistent_id
    p.dump(obj)
    with open(name + ".pkl", "wb") as f:
        f.write(buf.getvalue())
