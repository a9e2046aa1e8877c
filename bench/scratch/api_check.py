import time, numpy as np, zarr, numcodecs, bioimage_py as bp, shutil, tensorstore as ts
d="/tmp/bioimage-async-bench/tiny"
src=zarr.open_array(d+"/input.zarr", mode="r")
print(type(src), src.shape, src.chunks)
shutil.rmtree("/tmp/bpout.zarr", ignore_errors=True)
out=zarr.create_array("/tmp/bpout.zarr", shape=src.shape, chunks=(64,64,64), dtype="uint8", zarr_format=2, compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1))
t=time.time(); bp.copy(src, out, num_workers=2); print("bp copy", time.time()-t, np.array_equal(out[:], src[:]))
t=time.time(); s=bp.open_source(d+"/input.tif"); print(s, getattr(s,'chunks',None), s.shape)
shutil.rmtree("/tmp/bpout2.zarr", ignore_errors=True)
out2=zarr.create_array("/tmp/bpout2.zarr", shape=src.shape, chunks=(64,64,64), dtype="uint8", zarr_format=2, compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1))
try:
    bp.copy(s, out2, num_workers=2); print("bp tif default ok", time.time()-t, np.array_equal(out2[:], src[:]))
except Exception as e: print("ERR", e)
shutil.rmtree("/tmp/bpout3.zarr", ignore_errors=True)
out3=zarr.create_array("/tmp/bpout3.zarr", shape=(32,64,64), chunks=(64,64,64), dtype="uint8", zarr_format=2, compressors=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=1))
bp.downsample(src, 2, out3, order=1, anti_aliasing=True, block_shape=(64,64,64), num_workers=2)
a=src[:]
from scipy.ndimage import gaussian_filter
ref=gaussian_filter(a.astype(np.float64),0.5,mode="mirror")[::2,::2,::2]
o=out3[:]
print("bp AA diff", np.abs(o.astype(float)-ref).max(), np.abs(o.astype(int)-np.rint(ref).astype(int)).max(), (o!=np.rint(ref)).mean())
v=ts.downsample(ts.open({"driver":"zarr","kvstore":{"driver":"file","path":d+"/input.zarr"}}).result(),[2,2,2],"mean")
m=v.read().result(); ref2=a.reshape(32,2,64,2,64,2).mean(axis=(1,3,5))
print("ts mean dtype", m.dtype, np.abs(m.astype(float)-ref2).max(), (m!=np.rint(ref2)).sum(), (m!=np.floor(ref2)).sum())
