/* Disk ceiling probe for the write path (issue 14): N threads each with one 4 MiB pwrite in flight (queue depth N),
   O_DIRECT or buffered, from small-page or huge-page (MADV_HUGEPAGE, 2 MiB-aligned) buffers, then one fsync.
   gcc -O2 -pthread -o disk-qd bench/PbsRestore.Bench/disk-qd.c
   disk-qd <file> <MiB total> <KiB per write> <queue depth> [direct 1|0] [huge 0|1]   (deletes <file> after) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
static int huge;
static int fd; static long bs, count; static atomic_long next;
static void *worker(void *a){ void *buf; posix_memalign(&buf,huge?(2<<20):4096,bs); if(huge) madvise(buf,bs,MADV_HUGEPAGE); memset(buf,0x5a,bs);
 for(;;){ long i=atomic_fetch_add(&next,1); if(i>=count)break; if(pwrite(fd,buf,bs,i*bs)!=bs){perror("pwrite");exit(1);} } return 0;}
int main(int c,char**v){ const char*p=v[1]; long total=atol(v[2])<<20; bs=atol(v[3])<<10; int qd=atoi(v[4]); int direct=c>5?atoi(v[5]):1; huge=c>6?atoi(v[6]):0;
 count=total/bs; fd=open(p,O_RDWR|O_CREAT|O_TRUNC|(direct?O_DIRECT:0),0644); if(fd<0){perror("open");return 1;}
 struct timespec t0,t1; clock_gettime(CLOCK_MONOTONIC,&t0); pthread_t th[64];
 for(int i=0;i<qd;i++)pthread_create(&th[i],0,worker,0); for(int i=0;i<qd;i++)pthread_join(th[i],0); fsync(fd);
 clock_gettime(CLOCK_MONOTONIC,&t1); double s=(t1.tv_sec-t0.tv_sec)+(t1.tv_nsec-t0.tv_nsec)/1e9;
 struct rusage ru; getrusage(RUSAGE_SELF,&ru); printf("huge=%d sys=%.2fs ",huge,ru.ru_stime.tv_sec+ru.ru_stime.tv_usec/1e6); printf("%s qd=%d bs=%ldK total=%ldMiB: %.2f s %.0f MB/s\n",direct?"O_DIRECT":"buffered",qd,bs>>10,total>>20,s,total/1e6/s); close(fd); unlink(p); return 0;}
