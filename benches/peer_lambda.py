"""The Python peer for the Lambda cold-start benchmark: peer_app's FastAPI
app (FastAPI, boto3 clients, a strands-agents Agent) behind Mangum, run by
awslambdaric under the same Runtime API as rag-agent's handler.

    python -m awslambdaric peer_lambda.handler     (from benches/)
"""

from mangum import Mangum

from peer_app import app

handler = Mangum(app, lifespan="off")
