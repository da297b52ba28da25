"""LlamaIndex's default ingest pipeline, timed; run by ingest_vs_llamaindex.py in LlamaIndex's own venv.

SimpleDirectoryReader (pypdf for PDFs, one Document a page) → VectorStoreIndex.from_documents with
HuggingFaceEmbedding on the same sentence-transformers folder expertkit uses, in LlamaIndex's default
in-memory store. ``--chunk-size 0`` keeps LlamaIndex's defaults (SentenceSplitter 1024/200 tiktoken tokens);
a size sets SentenceSplitter(chunk_size, chunk_overlap) so that every node fits the embedder.

Prints one JSON line: seconds (read + split + embed, model load excluded), read_s, nodes, and coverage: the
share of nodes and of tokens the embedder cut off (it reads at most max_seq_length wordpieces of what
LlamaIndex hands it: the node text with its metadata).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--model", required=True, help="sentence-transformers folder")
    ap.add_argument("--chunk-size", type=int, default=0)
    ap.add_argument("--chunk-overlap", type=int, default=0)
    args = ap.parse_args()

    from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    t = time.perf_counter()
    embed = HuggingFaceEmbedding(model_name=args.model, device="cpu")
    embed.get_text_embedding("warm up")
    load_s = time.perf_counter() - t
    Settings.embed_model = embed
    Settings.llm = None
    transformations = None
    if args.chunk_size:
        transformations = [SentenceSplitter(chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap)]

    t = time.perf_counter()
    documents = SimpleDirectoryReader(args.folder, recursive=True).load_data()
    read_s = time.perf_counter() - t
    index = VectorStoreIndex.from_documents(documents, transformations=transformations)
    seconds = time.perf_counter() - t

    tokenizer = embed._model.tokenizer
    limit = embed._model.max_seq_length - 2  # [CLS] and [SEP]
    nodes = list(index.docstore.docs.values())
    lengths = [
        len(tokenizer(n.get_content(metadata_mode=MetadataMode.EMBED), add_special_tokens=False)["input_ids"])
        for n in nodes
    ]
    cut = [max(0, n - limit) for n in lengths]
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "read_s": round(read_s, 2),
                "load_s": round(load_s, 2),
                "documents": len(documents),
                "nodes": len(nodes),
                "nodes_cut": round(sum(c > 0 for c in cut) / max(1, len(nodes)), 4),
                "tokens_cut": round(sum(cut) / max(1, sum(lengths)), 4),
            }
        )
    )


if __name__ == "__main__":
    main()
