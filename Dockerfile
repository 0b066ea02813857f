FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services services
COPY intake intake
COPY dispatcher dispatcher
COPY departments departments
COPY notifier notifier
COPY gridcall gridcall
RUN pip install --no-cache-dir .
ENV GRIDCALL_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["gridcall"]
CMD ["run"]
