package imds

// Error bodies. The 400, 401 and 404 pages are byte for byte what EC2 sends
// (two differently indented templates, one per generation of the service);
// the others follow the 400/401 template.
const (
	notFoundBody = `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
	"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>404 - Not Found</title>
 </head>
 <body>
  <h1>404 - Not Found</h1>
 </body>
</html>`

	badRequestBody      = v2ErrorPrefix + "400 - Bad Request" + v2ErrorMiddle + "400 - Bad Request" + v2ErrorSuffix
	unauthorizedBody    = v2ErrorPrefix + "401 - Unauthorized" + v2ErrorMiddle + "401 - Unauthorized" + v2ErrorSuffix
	forbiddenBody       = v2ErrorPrefix + "403 - Forbidden" + v2ErrorMiddle + "403 - Forbidden" + v2ErrorSuffix
	tooManyRequestsBody = v2ErrorPrefix + "429 - Too Many Requests" + v2ErrorMiddle + "429 - Too Many Requests" + v2ErrorSuffix
	internalErrorBody   = v2ErrorPrefix + "500 - Internal Server Error" + v2ErrorMiddle + "500 - Internal Server Error" + v2ErrorSuffix
	unavailableBody     = v2ErrorPrefix + "503 - Service Unavailable" + v2ErrorMiddle + "503 - Service Unavailable" + v2ErrorSuffix
	v2ErrorPrefix       = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n   <head>\n      <title>"
	v2ErrorMiddle       = "</title>\n   </head>\n   <body>\n      <h1>"
	v2ErrorSuffix       = "</h1>\n   </body>\n</html>"
)
