// Log in or create an account. The last user id is filled in; errors are shown in words.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Rectangle {
    id: root
    color: Theme.yellow
    property bool registering: false
    property string error: ""

    function submit() {
        error = ""
        if (registering)
            bridge.register(userField.text, passwordField.text, nameField.text)
        else
            bridge.login(userField.text, passwordField.text)
    }

    Connections {
        target: bridge
        function onLoginFailed(message) { root.error = message }
    }

    ColumnLayout {
        anchors.centerIn: parent
        width: 300
        spacing: 10

        Rectangle {   // the logo: a speech bubble
            Layout.alignment: Qt.AlignHCenter
            Layout.bottomMargin: 24
            width: 108; height: 84; radius: 42
            color: Theme.brown
            Rectangle {
                width: 22; height: 22; rotation: 45
                color: Theme.brown
                x: 22; y: 62
            }
            Text {
                anchors.centerIn: parent
                text: "TALK"
                color: Theme.yellow
                font.pixelSize: 26
                font.bold: true
                font.letterSpacing: 1
            }
        }
        InputField {
            id: userField
            Layout.fillWidth: true
            placeholderText: qsTr("User id")
            text: bridge.lastUserId
            onAccepted: passwordField.forceActiveFocus()
        }
        InputField {
            id: passwordField
            objectName: "passwordField"
            Layout.fillWidth: true
            placeholderText: root.registering ? qsTr("Password (8 characters or more)") : qsTr("Password")
            echoMode: TextInput.Password
            onAccepted: root.registering ? nameField.forceActiveFocus() : root.submit()
        }
        InputField {
            id: nameField
            Layout.fillWidth: true
            visible: root.registering
            placeholderText: qsTr("Display name, e.g. 김민수 or Alex")
            onAccepted: root.submit()
        }
        Text {
            Layout.fillWidth: true
            visible: root.error.length > 0
            text: root.error
            color: Theme.error
            wrapMode: Text.Wrap
            font.pixelSize: 13
            horizontalAlignment: Text.AlignHCenter
        }
        PrimaryButton {
            id: submitButton
            Layout.fillWidth: true
            Layout.topMargin: 4
            text: bridge.busy ? qsTr("Please wait…") : root.registering ? qsTr("Create account") : qsTr("Log in")
            enabled: !bridge.busy && userField.text.length > 0 && passwordField.text.length > 0
            onClicked: root.submit()
        }
        Text {
            Layout.alignment: Qt.AlignHCenter
            Layout.topMargin: 8
            text: root.registering ? qsTr("I have an account") : qsTr("Create a new account")
            color: Theme.brown
            font.pixelSize: 13
            font.underline: link.hovered
            HoverHandler { id: link; cursorShape: Qt.PointingHandCursor }
            TapHandler { onTapped: { root.registering = !root.registering; root.error = "" } }
        }
    }
    Text {
        anchors.bottom: parent.bottom
        anchors.horizontalCenter: parent.horizontalCenter
        anchors.bottomMargin: 16
        text: qsTr("Server %1").arg(bridge.serverAddress)
        color: "#8A7A00"
        font.pixelSize: Theme.fontSmall
    }
    Component.onCompleted: (userField.text.length ? passwordField : userField).forceActiveFocus()
}
