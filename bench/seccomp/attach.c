/* Times seccomp(SECCOMP_SET_MODE_FILTER) of the programs in a berth .bpf file
 * (mode 1; mode 0 installs nothing), and fork + install + exec /bin/true + exit.
 *   gcc -O2 -o attach attach.c && ./attach FILE.bpf 1 300
 * See BENCHMARKS.md, "Where the seccomp cost goes". */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
int main(int argc,char**argv){
  FILE*f=fopen(argv[1],"rb"); static unsigned char buf[1<<20]; size_t n=fread(buf,1,sizeof buf,f);
  int mode=atoi(argv[2]); int iters=atoi(argv[3]);
  struct sock_fprog progs[16]; int np=0; size_t off=0;
  while(off<n){uint32_t c;memcpy(&c,buf+off,4);off+=4;progs[np].len=c;progs[np].filter=(struct sock_filter*)(buf+off);off+=8*c;np++;}
  double tot=0,inst=0;
  for(int i=0;i<iters;i++){
    int p[2];pipe(p);
    double t0=now();
    pid_t pid=fork();
    if(!pid){prctl(PR_SET_NO_NEW_PRIVS,1,0,0,0);double a=now();
      if(mode) for(int j=0;j<np;j++) if(syscall(SYS_seccomp,SECCOMP_SET_MODE_FILTER,0,&progs[j])) _exit(9);
      double b=now(); write(p[1],&(double){b-a},8);
      execl("/bin/true","true",(char*)0);_exit(1);}
    double d;read(p[0],&d,8);inst+=d;int st;waitpid(pid,&st,0);tot+=now()-t0;close(p[0]);close(p[1]);
  }
  printf("programs %d mode %d: install %.3f ms, fork+install+exec+exit %.3f ms\n",np,mode,inst/iters,tot/iters);
}
