# Builds vab and runs it. FUSE needs: docker run --device /dev/fuse --cap-add SYS_ADMIN ...
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends e2fsprogs erofs-utils mount bsdiff xz-utils bzip2 zstd lz4 openssl python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/vab
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bench ./bench
COPY proto ./proto
COPY bin ./bin
COPY scripts ./scripts
COPY fixtures ./fixtures
RUN npm run build && npm prune --omit=dev && ln -s /opt/vab/bin/vab /usr/local/bin/vab
ENTRYPOINT ["vab"]
CMD ["--help"]
