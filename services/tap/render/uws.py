"""UWS 1.1 job and job-list documents.

Namespace stays ``http://www.ivoa.net/xml/UWS/v1.0`` (UWS 1.1 kept it) with
``version="1.1"``. Nillable elements without a value (``ownerId``, ``quote``,
``startTime``, ``endTime``, ``destruction``) are written as ``xsi:nil="true"``, which pyvo
reads as None (pyvo#89). The result is always named ``result`` (pyvo#670).
"""

from __future__ import annotations

from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from ..models.job import Job

__all__ = ["isoformat", "job_list_xml", "job_xml"]

_NS = (
    'xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
)


def isoformat(value: datetime) -> str:
    """ISO 8601 in UTC with millisecond precision and a ``Z`` (UWS 1.1 §2.2.3.4)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _element(name: str, value: str | None) -> str:
    if value is None:
        return f'  <uws:{name} xsi:nil="true"/>\n'
    return f"  <uws:{name}>{escape(value)}</uws:{name}>\n"


def _date(value: datetime | None) -> str | None:
    return isoformat(value) if value is not None else None


def job_xml(job: Job, job_url: str) -> str:
    """The full job description of ``GET /async/{id}``."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<uws:job {_NS} version="1.1">\n',
        _element("jobId", job.job_id),
    ]
    if job.run_id:
        parts.append(_element("runId", job.run_id))
    parts += [
        _element("ownerId", job.owner),
        _element("phase", job.phase.value),
        _element("quote", None),
        _element("creationTime", isoformat(job.creation_time)),
        _element("startTime", _date(job.start_time)),
        _element("endTime", _date(job.end_time)),
        _element("executionDuration", str(job.execution_duration)),
        _element("destruction", isoformat(job.destruction)),
        parameters_fragment(job),
        results_fragment(job, job_url),
    ]
    if job.error_message is not None and job.phase.value == "ERROR":
        parts.append(
            '  <uws:errorSummary type="fatal" hasDetail="true">\n'
            f"    <uws:message>{escape(job.error_message)}</uws:message>\n"
            "  </uws:errorSummary>\n"
        )
    parts.append("</uws:job>\n")
    return "".join(parts)


def parameters_fragment(job: Job, *, standalone: bool = False) -> str:
    """``<uws:parameters>``; standalone adds the XML declaration and namespaces."""
    body = "".join(
        f"    <uws:parameter id={quoteattr(name)}>{escape(value)}</uws:parameter>\n"
        for name, value in job.parameters.items()
    )
    if standalone:
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:parameters {_NS}>\n{body}</uws:parameters>\n'
    return f"  <uws:parameters>\n{body}  </uws:parameters>\n"


def results_fragment(job: Job, job_url: str, *, standalone: bool = False) -> str:
    """``<uws:results>`` with the one result ``result`` once the job completed."""
    body = ""
    if job.phase.value == "COMPLETED" and job.result_path:
        attrs = f' xlink:type="simple" xlink:href={quoteattr(job_url + "/results/result")}'
        if job.result_mime:
            attrs += f" mime-type={quoteattr(job.result_mime)}"
        if job.result_bytes is not None:
            attrs += f' size="{job.result_bytes}"'
        body = f'    <uws:result id="result"{attrs}/>\n'
    if standalone:
        return f'<?xml version="1.0" encoding="UTF-8"?>\n<uws:results {_NS}>\n{body}</uws:results>\n'
    return f"  <uws:results>\n{body}  </uws:results>\n"


def job_list_xml(jobs: list[Job], async_url: str) -> str:
    """``GET /async``: one ``jobref`` per job with its phase, run id, owner and creation time."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<uws:jobs {_NS} version="1.1">\n']
    for job in jobs:
        href = quoteattr(f"{async_url}/{job.job_id}")
        parts.append(f'  <uws:jobref id="{job.job_id}" xlink:type="simple" xlink:href={href}>\n')
        parts.append(f"    <uws:phase>{job.phase.value}</uws:phase>\n")
        if job.run_id:
            parts.append(f"    <uws:runId>{escape(job.run_id)}</uws:runId>\n")
        parts.append(f"    <uws:ownerId>{escape(job.owner)}</uws:ownerId>\n")
        parts.append(f"    <uws:creationTime>{isoformat(job.creation_time)}</uws:creationTime>\n")
        parts.append("  </uws:jobref>\n")
    parts.append("</uws:jobs>\n")
    return "".join(parts)
