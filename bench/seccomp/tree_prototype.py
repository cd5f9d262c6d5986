# Timing prototype only (NOT a compiler): reads berth's default.bpf (seccompiler output),
# derives each syscall number's verdict of the first program by emulation, and emits a
# binary search over the 60 intervals of equal verdict (arg-filtered calls treated as denied,
# so its verdicts are NOT the profile's) as tree.bpf, to time the attach. See BENCHMARKS.md.
import struct,sys
b=open('default.bpf','rb').read()
progs=[];o=0
while o<len(b):
    n=struct.unpack_from('<I',b,o)[0];o+=4
    progs.append([struct.unpack_from('<HBBI',b,o+8*i) for i in range(n)]);o+=8*n
def run(p,nr):
    A=0;pc=0
    while True:
        c,jt,jf,k=p[pc]
        if c==0x20:
            if k==0: A=nr
            elif k==4: A=0xc000003e
            else: return 'ARGS'
            pc+=1
        elif c==0x06: return k
        elif c==0x05: pc+=1+k
        elif c==0x15: pc+=1+(jt if A==k else jf)
        else: raise Exception(hex(c))
v=[run(progs[0],n) for n in range(512)]
print(len(progs[0]),len(progs[1]), sum(1 for x in v if x==0x7fff0000), sum(1 for x in v if x=='ARGS'))
# intervals of constant verdict for program 0 (ARGS verdict -> treat as ERRNO leaf for timing only)
ALLOW=0x7fff0000;DENY=0x00050001
vals=[ALLOW if x==ALLOW else DENY for x in v]
iv=[];s=0
for n in range(1,513):
    if n==512 or vals[n]!=vals[s]: iv.append((s,vals[s]));s=n
# program: ld arch; jeq; ret kill; ld nr; tree
ins=[(0x20,0,0,4),(0x15,1,0,0xc000003e),(0x06,0,0,0x80000000),(0x20,0,0,0),(0x25,0,1,0x3fffffff),(0x06,0,0,DENY)]
# build tree emitting nodes; leaves jump to shared returns at end
body=[]
def emit(lo,hi):
    # returns index of node in body; intervals iv[lo:hi]
    if hi-lo==1: return ('ret',iv[lo][1])
    mid=(lo+hi)//2
    idx=len(body);body.append(None)
    r=emit(mid,hi); l=emit(lo,mid)
    body[idx]=('jge',iv[mid][0],r,l)
    return ('node',idx)
root=emit(0,len(iv))
# layout: body nodes in order, then ret ALLOW, ret DENY
n=len(body);retpos={ALLOW:n,DENY:n+1}
def tgt(x,i):
    t=retpos[x[1]] if x[0]=='ret' else x[1]
    d=t-i-1; assert 0<=d<256,d; return d
for i,(op,k,r,l) in enumerate(body):
    ins.append((0x35,tgt(r,i),tgt(l,i),k))
ins+= [(0x06,0,0,ALLOW),(0x06,0,0,DENY)]
out=struct.pack('<I',len(ins))+b''.join(struct.pack('<HBBI',*x) for x in ins)
p1=progs[1];out+=struct.pack('<I',len(p1))+b''.join(struct.pack('<HBBI',*x) for x in p1)
open('tree.bpf','wb').write(out)
open('tree1.bpf','wb').write(out[:4+8*len(ins)])
print('intervals',len(iv),'tree insns',len(ins))
